// The login form: fields named username and password, its error in [data-error] (stable hooks for scripts).
import { useState } from 'preact/hooks'
import { api } from '../lib/api.js'
import { html } from '../lib/html.js'

export function Login ({ onLoggedIn, notice }) {
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)

  const submit = async (e) => {
    e.preventDefault()
    const form = e.currentTarget
    const username = form.elements.username.value
    const password = form.elements.password.value
    setBusy(true)
    setError(null)
    try {
      const me = await api('/api/v1/identity/login', { body: { username, password, session: true }, quiet401: true })
      form.elements.password.value = ''
      onLoggedIn({ username: me.username, role: me.role })
    } catch (err) {
      setError(err.status === 401
        ? 'Wrong username or password.'
        : err.status === 429 ? 'Too many tries: wait a little and try again.' : err.message)
    } finally {
      setBusy(false)
    }
  }

  return html`<main class="login">
    <form class="login-form" method="post" onSubmit=${submit}>
      <h1><img src="/ui/icon.svg" alt="" width="28" height="28" /> Noodle</h1>
      <p class="muted">Sign in to see the mesh.</p>
      ${notice != null && html`<p class="notice">${notice}</p>`}
      <label>Username <input name="username" autocomplete="username" required autofocus /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required /></label>
      <p class="problem" data-error role="alert" hidden=${error === null}>${error}</p>
      <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      <p class="muted small">Accounts are made with <code>noodle user add</code> on a box.</p>
    </form>
  </main>`
}
