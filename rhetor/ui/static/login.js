// Sign-in for a Rhetor with keys: keep the key for this browser session and come back to /ui.
"use strict";
document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = document.getElementById("key").value.trim();
  if (!key) return;
  sessionStorage.setItem("rhetor_key", key);
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "rhetor_ui_key=" + encodeURIComponent(key) + "; Path=/ui; SameSite=Strict" + secure;
  location.replace("/ui");
});
