"""Request bodies of the native API (the tekton-llm-client contract), validated with pydantic, and their
translation to the gateway's `ChatInput`. Unknown top-level fields are ignored (clients send extras).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rhetor.gateway import ChatInput
from rhetor.types import Message


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


__all__ = ["ChatBody", "ChatFields", "MessageIn"]
