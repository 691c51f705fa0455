// Shared helpers: JSON calls carrying the CSRF token, messages, sign-in and sign-out.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function api(method, url, body) {
  const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (error) { data = { detail: text }; }
  if (!response.ok) {
    const failure = new Error((data && data.detail) || response.statusText);
    failure.status = response.status;
    failure.data = data;
    throw failure;
  }
  return data;
}

function flash(message, isError) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.classList.toggle("error", Boolean(isError));
  box.hidden = !message;
}

// Where to go after sign-in: only a path on this site (pages.py safe_next applies the same rule).
// Browsers read a backslash as "/" and drop tabs and newlines, so "/<backslash>evil.example" would leave the site.
function safeNext(next) {
  const local = typeof next === "string" && next.startsWith("/") && !next.startsWith("//")
    && !/[\\\u0000-\u001f\u007f-\u009f]/.test(next);
  return local ? next : "/";
}

document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", async () => {
    await api("POST", "/api/logout").catch(() => null);
    window.location = "/login";
  });
  const form = document.getElementById("login-form");
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    try {
      await api("POST", "/api/login", { username: form.username.value, password: form.password.value });
      window.location = safeNext(form.dataset.next || "/");
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  });
});
