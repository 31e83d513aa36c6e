// Deployments of the workspace: list, create (allowlisted connector classes only), delete.
// Secrets are typed into password fields, sent once, and only ever shown as the server masks them.
import { html, rest, rpc, useState, usePoll, when, ErrorNote } from "../lib.js";

function InitFields({ cls, prefix, errors }) {
  if (!cls) return null;
  const props = Object.entries(cls.init_schema.properties || {});
  const required = new Set(cls.init_schema.required || []);
  return props.map(([key, sub]) => {
    const id = `${prefix}-${key}`;
    const secret = cls.secret_keys.includes(key);
    const err = errors[`${prefix}.${key}`];
    return html`<div class="field">
      <label for=${id}>${key}${required.has(key) ? " *" : ""}${secret ? html` <span class="muted">(secret: stored sealed, shown masked)</span>` : ""}</label>
      <input id=${id} name=${`${prefix}.${key}`} type=${secret ? "password" : sub.pattern && sub.pattern.startsWith("^https?") ? "url" : "text"}
        autocomplete=${secret ? "new-password" : "off"} required=${required.has(key)} aria-invalid=${err ? "true" : null} />
      ${err ? html`<span class="field-error" role="alert">${err}</span>` : ""}
    </div>`;
  });
}

function CreateForm({ classes, onCreated }) {
  const [registry, setRegistry] = useState(classes.registry_connectors[0]?.name || "");
  const [proxy, setProxy] = useState(classes.server_proxies[0]?.name || "");
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const registryCls = classes.registry_connectors.find((c) => c.name === registry);
  const proxyCls = classes.server_proxies.find((c) => c.name === proxy);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { deployment_key: form.get("deployment_key"), registry_connector_class: registry,
      server_proxy_class: proxy, registry_connector_init: {}, server_proxy_init: {} };
    for (const [name, value] of form.entries()) {
      const [group, key] = name.split(".");
      if (key && value !== "") body[group][key] = value;
    }
    setBusy(true);
    setErrors({});
    setFailure(null);
    try {
      await rest("POST", "/api/deployment", body);
      for (const input of event.target.querySelectorAll("input")) input.value = ""; // no secret stays in the page
      onCreated();
    } catch (e) {
      if (e.field) setErrors({ [e.field]: e.message });
      else setFailure(e);
    } finally { setBusy(false); }
  };
  return html`<form class="create" onSubmit=${submit} aria-label="Create a deployment">
    <h2>New deployment</h2>
    <div class="field"><label for="deployment_key">Deployment key *</label>
      <input id="deployment_key" name="deployment_key" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,199}" aria-invalid=${errors.deployment_key ? "true" : null} />
      ${errors.deployment_key ? html`<span class="field-error" role="alert">${errors.deployment_key}</span>` : ""}</div>
    <div class="field"><label for="registry_connector_class">Registry connector class</label>
      <select id="registry_connector_class" value=${registry} onChange=${(e) => setRegistry(e.target.value)}>
        ${classes.registry_connectors.map((c) => html`<option value=${c.name}>${c.name}</option>`)}</select></div>
    <fieldset><legend>Registry connector settings</legend><${InitFields} cls=${registryCls} prefix="registry_connector_init" errors=${errors} /></fieldset>
    <div class="field"><label for="server_proxy_class">Server proxy class</label>
      <select id="server_proxy_class" value=${proxy} onChange=${(e) => setProxy(e.target.value)}>
        ${classes.server_proxies.map((c) => html`<option value=${c.name}>${c.name}</option>`)}</select></div>
    <fieldset><legend>Server proxy settings</legend><${InitFields} cls=${proxyCls} prefix="server_proxy_init" errors=${errors} /></fieldset>
    <button type="submit" disabled=${busy}>Create deployment</button>
    <${ErrorNote} error=${failure} />
  </form>`;
}

function Settings({ init }) {
  return html`<dl class="settings">${Object.entries(init || {}).map(([k, v]) => html`<dt>${k}</dt><dd><code>${typeof v === "string" ? v : JSON.stringify(v)}</code></dd>`)}</dl>`;
}

export function DeploymentsPage({ can }) {
  const [deployments, setDeployments] = useState(null);
  const [classes, setClasses] = useState(null);
  const [actionError, setActionError] = useState(null);
  const load = async () => setDeployments(await rest("GET", "/api/deployment"));
  const error = usePoll(async () => {
    await load();
    if (can("deployments.create") && !classes) setClasses(await rpc("deployments.get_connector_classes"));
  }, 0);
  const remove = async (key) => {
    if (!confirm(`Delete deployment ${key}? Its key stays taken.`)) return;
    setActionError(null);
    try { await rest("DELETE", `/api/deployment/${encodeURIComponent(key)}`); await load(); } catch (e) { setActionError(e); }
  };
  return html`<div class="two-columns even">
    <section aria-label="Deployments">
      <${ErrorNote} error=${error || actionError} />
      ${deployments && deployments.length === 0 ? html`<p class="muted">No deployments in this workspace.</p>` : ""}
      ${(deployments || []).map((d) => html`<article key=${d.deployment_key} class="deployment" aria-label=${"Deployment " + d.deployment_key}>
        <h2><code>${d.deployment_key}</code></h2>
        <p class="muted">created ${when(d.created)}</p>
        <h3>Registry connector</h3><p><code>${d.registry_connector_class}</code></p><${Settings} init=${d.registry_connector_init} />
        <h3>Server proxy</h3><p><code>${d.server_proxy_class}</code></p><${Settings} init=${d.server_proxy_init} />
        ${can("deployments.delete") ? html`<button type="button" class="danger" onClick=${() => remove(d.deployment_key)}>Delete ${d.deployment_key}</button>` : ""}
      </article>`)}
    </section>
    ${can("deployments.create") && classes ? html`<${CreateForm} classes=${classes} onCreated=${load} />` : ""}
  </div>`;
}
