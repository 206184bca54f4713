"""Request bodies of the native API (the tekton-llm-client contract), validated with pydantic, and their
translation to the gateway's `ChatInput`. Unknown top-level fields are ignored (clients send extras); the
top-level `model`, `capability`, `temperature` and `max_tokens` of Tekton's 2025 rhetor_client are honoured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from rhetor.errors import UnknownProviderError
from rhetor.gateway import ChatInput
from rhetor.providers import canonical
from rhetor.routing.names import split_model
from rhetor.types import Message


def canonical_or_none(provider: str) -> str | None:
    try:
        return canonical(provider)
    except UnknownProviderError:
        return None


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatFields(BaseModel):
    """The fields every native and legacy chat body shares."""

    model_config = ConfigDict(extra="ignore")
    message: str | None = None
    messages: list[MessageIn] | None = None
    task_type: str | None = None
    component: str | None = None
    provider_id: str | None = None
    model_id: str | None = None
    system_prompt: str | None = None
    streaming: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    # Tekton's 2025 rhetor_client (contracts §8) sends these at the top level; each folds into its usual
    # place (model → provider_id/model_id, capability → task_type, the rest → options); a clash is a 422.
    model: str | None = Field(None, min_length=1)  # a bare id runs where it is served (rhetor.routing.names)
    capability: str | None = None  # code, planning, reasoning, chat: the task type
    temperature: float | None = None
    max_tokens: int | None = Field(None, gt=0)

    @field_validator("model")
    @classmethod
    def _model_agrees(cls, v: str | None, info: ValidationInfo) -> str | None:
        model_id, provider_id = info.data.get("model_id"), info.data.get("provider_id")
        if v is None:
            return v
        provider, name = split_model(v)
        if model_id is not None and model_id not in (v, name):
            raise ValueError(f"{v!r} disagrees with model_id {model_id!r}; give one of them")
        if provider is not None and provider_id is not None and canonical_or_none(provider_id) != provider:
            raise ValueError(f"{v!r} names provider {provider!r} but provider_id is {provider_id!r}")
        return v

    @field_validator("capability")
    @classmethod
    def _capability_agrees(cls, v: str | None, info: ValidationInfo) -> str | None:
        task_type = info.data.get("task_type")
        if v is not None and task_type is not None and task_type.strip().lower() != v.strip().lower():
            raise ValueError(f"{v!r} disagrees with task_type {task_type!r}; give one of them")
        return v

    @field_validator("temperature", "max_tokens")
    @classmethod
    def _sampling_agrees(cls, v: float | None, info: ValidationInfo) -> float | None:
        given = (info.data.get("options") or {}).get(info.field_name)
        if v is not None and given is not None and given != v:
            raise ValueError(f"{v!r} disagrees with options.{info.field_name} {given!r}; give one of them")
        return v

    @model_validator(mode="after")
    def _fold_top_level(self) -> ChatFields:
        if self.model is not None:
            provider, name = split_model(self.model)
            self.model_id = name
            self.provider_id = self.provider_id or provider
        if self.capability is not None:
            self.task_type = self.task_type or self.capability
        for key in ("temperature", "max_tokens"):
            value = getattr(self, key)
            if value is not None:
                self.options.setdefault(key, value)
        return self


class ChatBody(ChatFields):
    context_id: str | None = Field(None, min_length=1, max_length=256)
    template_id: str | None = Field(None, min_length=1, max_length=128)  # a prompt template (rhetor.prompts)
    template_version: int | None = Field(None, ge=0)
    variables: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ChatBody:
        if self.message is not None and self.messages is not None:
            raise ValueError("give exactly one of 'message' or 'messages'")
        if self.message is None and self.messages is None and self.template_id is None:
            raise ValueError("give exactly one of 'message' or 'messages' (or a 'template_id' that renders it)")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self

    def to_input(self) -> ChatInput:
        return ChatInput(
            message=self.message,
            messages=[Message(m.role, m.content) for m in self.messages] if self.messages is not None else None,
            context_id=self.context_id,
            task_type=self.task_type,
            component=self.component,
            provider_id=self.provider_id,
            model_id=self.model_id,
            system_prompt=self.system_prompt,
            options=dict(self.options),
            template_id=self.template_id,
            template_version=self.template_version,
            variables=self.variables,
        )


class GenerateBody(ChatBody):
    """`POST /api/v1/generate`: the adapter-era body of Hephaestus' llm_adapter_client `{model, messages,
    temperature, max_tokens?, stop?, provider?}` and the 2025 rhetor_client's `{prompt, model, temperature,
    max_tokens, component, capability, system_prompt?}` (contracts §2, §8). `prompt` is the `message`."""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        prompt = data.pop("prompt", None)
        if prompt is not None:
            if not isinstance(prompt, str):
                raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
            if data.get("message") is not None or data.get("messages") is not None:
                raise ValueError("give exactly one of 'prompt', 'message' or 'messages'")
            data["message"] = prompt
        provider = data.pop("provider", None)
        if provider is not None and data.get("provider_id") is None:
            data["provider_id"] = provider
        stop, options = data.pop("stop", None), data.get("options")
        if stop is not None and (options is None or isinstance(options, dict)):
            if (options or {}).get("stop", stop) != stop:
                raise ValueError("stop disagrees with options.stop; give one of them")
            data["options"] = {**(options or {}), "stop": stop}
        return data


# The common small body (a `message` and the plain routing strings) is checked here instead of by pydantic:
# `model_validate` of the `native` body (four field validators, two model validators) cost ~23k instructions before
# `to_input`, this check with its ChatInput built ~14k (callgrind; the request: 856k -> 824k). Any other body takes
# the full validation, so what is accepted, refused and how is unchanged. (No `context_id`, `model`, `capability` or
# sampling fields here: each has its own rule.)
_QUICK_FIELDS = frozenset({"message", "streaming", "task_type", "component", "provider_id", "model_id",
                           "system_prompt"})


def quick_input(data: Any) -> tuple[ChatInput, bool] | None:
    """(`ChatBody.to_input()`, `streaming`) of a body of only those fields, strings (or null) each, `message` set;
    None for any other body."""
    if type(data) is not dict or not _QUICK_FIELDS.issuperset(data) or type(data.get("message")) is not str:
        return None
    streaming = data.get("streaming", False)
    task_type, component = data.get("task_type"), data.get("component")
    provider_id, model_id, system = data.get("provider_id"), data.get("model_id"), data.get("system_prompt")
    if type(streaming) is not bool:
        return None
    for value in (task_type, component, provider_id, model_id, system):
        if value is not None and type(value) is not str:
            return None
    return ChatInput(message=data["message"], task_type=task_type, component=component, provider_id=provider_id,
                     model_id=model_id, system_prompt=system, options={}), streaming


__all__ = ["ChatBody", "ChatFields", "GenerateBody", "MessageIn", "quick_input"]
