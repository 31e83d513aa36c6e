// The console's shell: the session (the ClearML web app's cookie sign-in), the navigation, the pages.
import { html, render, rpc, useState, useEffect, ErrorNote, ApiError } from "./lib.js";
import { PipelinesPage } from "./pages/pipelines.js";
import { ModelsPage } from "./pages/models.js";
import { DeploymentsPage } from "./pages/deployments.js";
import { RenderPage } from "./pages/render.js";

const PAGES = [
  { path: "pipelines", title: "Pipelines", component: PipelinesPage },
  { path: "models", title: "Model registry", component: ModelsPage },
  { path: "deployments", title: "Deployments", component: DeploymentsPage },
  { path: "render", title: "Render farm", component: RenderPage },
];
// The buttons a page may offer: each shown only when the endpoint's own role rule allows the caller.
const ACTIONS = ["workflows.create", "workflows.start", "workflows.stop", "workflows.check_members",
  "members.register", "members.remove", "registry.invoke",
  "deployments.create", "deployments.delete", "manager.update_task", "manager.delete_task",
  "manager.set_worker_status"];

function base64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function SignIn({ onSignedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    setBusy(true);
    try {
      // The same sign-in as the ClearML web app: Basic user:password; the answer sets the cookie.
      await rpc("auth.login", {}, { Authorization: "Basic " + base64(`${form.get("username")}:${form.get("password")}`) });
      onSignedIn();
    } catch (e) {
      setError(e.status === 401 ? new Error("Wrong user name or password.") : e);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="sign-in">
    <h1>Console</h1>
    <form onSubmit=${submit} aria-label="Sign in">
      <label for="username">User name</label>
      <input id="username" name="username" autocomplete="username" required />
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required />
      <button type="submit" disabled=${busy}>Sign in</button>
      <${ErrorNote} error=${error} />
    </form>
  </main>`;
}

function currentPage() {
  const rest = location.pathname.replace(/^\/console\/?/, "").split("/")[0];
  return PAGES.find((p) => p.path === rest) || PAGES[0];
}

function App() {
  const [session, setSession] = useState(undefined); // undefined: asking; null: signed out
  const [error, setError] = useState(null);
  const load = async () => {
    try {
      setSession(await rpc("console.get_permissions", { endpoints: ACTIONS }));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setSession(null);
      else setError(e);
    }
  };
  useEffect(() => {
    load();
    const signedOut = () => setSession(null);
    window.addEventListener("console:signed-out", signedOut);
    return () => window.removeEventListener("console:signed-out", signedOut);
  }, []);
  if (error) return html`<${ErrorNote} error=${error} />`;
  if (session === undefined) return html`<p class="loading">Loading the console…</p>`;
  if (session === null) return html`<${SignIn} onSignedIn=${load} />`;
  const page = currentPage();
  const can = (name) => Boolean(session.allowed[name]);
  const signOut = async () => { await rpc("login.logout"); setSession(null); };
  const Page = page.component;
  return html`<div class="shell">
    <header>
      <a class="brand" href="/console/">Console</a>
      <nav aria-label="Pages">
        ${PAGES.map((p) => html`<a href=${"/console/" + p.path} aria-current=${p === page ? "page" : null}>${p.title}</a>`)}
      </nav>
      <div class="who">
        <span>${session.user.name || session.user.id} · ${session.company.name || session.company.id} · <strong>${session.user.role}</strong></span>
        <button type="button" class="link" onClick=${signOut}>Sign out</button>
      </div>
    </header>
    <main id="page">
      <h1>${page.title}</h1>
      <${Page} can=${can} session=${session} />
    </main>
  </div>`;
}

const root = document.getElementById("console");
root.textContent = "";
render(html`<${App} />`, root);
