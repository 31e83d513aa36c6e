// Pipelines of the pipeline leader: create one from the members in order, follow it live (steps,
// member calls), start and stop it; register, remove and ask the members.
import { html, rpc, useState, useEffect, usePoll, when, ago, Status, ErrorNote } from "../lib.js";

const { useErrorBoundary } = window.preactHooks;
const LIVE = ["created", "running"];
// The reference protocol's container ids, offered when registering (any id of the pattern works).
const REFERENCE_IDS = ["labelling", "bms", "vis2code", "backbone_nas", "neck_nas", "code_gen", "cloud_deploy",
  "ondevice_deploy"];

function progress(p) {
  const done = p.steps.filter((s) => s.status === "completed").length;
  return { done, total: p.steps.length };
}

// A server error that names a field goes to that field; any other is the form's own.
function splitError(e) {
  return e.field ? { fields: { [e.field]: e.message }, other: null } : { fields: {}, other: e };
}

function FieldError({ id, message }) {
  return message ? html`<span class="field-error" id=${id} role="alert">${message}</span>` : "";
}

function Readiness({ member }) {
  if (!member || member.ready === null || member.ready === undefined) return html`<span class="status">not asked</span>`;
  return member.ready ? html`<span class="status status-ready">ready</span>` : html`<span class="status status-not-ready">not ready</span>`;
}

function StepsTable({ pipeline }) {
  return html`<div class="scroll"><table class="steps" aria-label="Steps">
    <thead><tr><th scope="col">#</th><th scope="col">Member</th><th scope="col">Status</th>
      <th scope="col">Started</th><th scope="col">Finished</th><th scope="col">Note</th></tr></thead>
    <tbody>${pipeline.steps.map((s, i) => html`<tr class=${i === pipeline.current_step && pipeline.status === "running" ? "current" : ""}>
      <td>${i + 1}</td><td><code>${s.container_id}</code></td><td><${Status} value=${s.status} /></td>
      <td>${when(s.started)}</td><td>${when(s.finished)}</td><td>${s.reason || ""}</td></tr>`)}</tbody>
  </table></div>`;
}

function CallLog({ events }) {
  if (!events.length) return html`<p class="muted">No calls yet.</p>`;
  return html`<div class="scroll"><table class="log" aria-label="Member call log">
    <thead><tr><th scope="col">Time</th><th scope="col">Direction</th><th scope="col">Member</th>
      <th scope="col">Call</th><th scope="col">Answer</th><th scope="col">Error</th><th scope="col">ms</th></tr></thead>
    <tbody>${events.map((e) => html`<tr class=${e.error ? "failed" : ""}>
      <td>${when(e.time)}</td><td>${e.direction.replace("_", " ")}</td><td><code>${e.container_id || ""}</code></td>
      <td>${e.call || ""}</td><td>${e.answer ?? ""}</td><td>${e.error || ""}</td><td>${e.duration_ms ?? ""}</td></tr>`)}</tbody>
  </table></div>`;
}

function NotReady({ error }) {
  if (!error || !error.data.members) return "";
  return html`<ul class="not-ready">${error.data.members.filter((m) => !m.ready).map((m) =>
    html`<li><code>${m.container_id}</code>: ${m.answer ? `answered ${m.answer}` : m.error}</li>`)}</ul>`;
}

function PipelineDetail({ id, can, onChanged, onSeen, startError }) {
  const [pipeline, setPipeline] = useState(null);
  const [events, setEvents] = useState([]);
  const [actionError, setActionError] = useState(startError || null);
  const [busy, setBusy] = useState(false);
  // While it can still move, the page follows it each second; a finished one is read now and then.
  const live = !pipeline || LIVE.includes(pipeline.status);
  const error = usePoll(async () => {
    const [p, log] = await Promise.all([rpc("workflows.get_by_id", { pipeline: id }), rpc("workflows.get_log", { pipeline: id })]);
    setPipeline(p.pipeline);
    setEvents(log.events);
    onSeen(p.pipeline);
  }, live ? 1000 : 10000, [id, live]);
  useEffect(() => setActionError(startError || null), [id, startError]);
  const act = async (action) => {
    setBusy(true);
    setActionError(null);
    try {
      setPipeline((await rpc(`workflows.${action}`, { pipeline: id })).pipeline);
      setEvents((await rpc("workflows.get_log", { pipeline: id })).events);
      onChanged();
    } catch (e) { setActionError(e); } finally { setBusy(false); }
  };
  if (!pipeline) return html`<${ErrorNote} error=${error} />`;
  const { done, total } = progress(pipeline);
  return html`<section class="detail" aria-label=${"Pipeline " + id}>
    <h2>Pipeline <code>${id}</code> <${Status} value=${pipeline.status} /></h2>
    <p>Project <code>${pipeline.project_id}</code> · user <code>${pipeline.user_id}</code> ·
      created ${when(pipeline.created)} · started ${when(pipeline.started)} · finished ${when(pipeline.finished)}</p>
    ${pipeline.reason ? html`<p class="reason">${pipeline.reason}</p>` : ""}
    <p><label>Steps done <progress max=${total} value=${done}>${done} of ${total}</progress> ${done} of ${total}</label></p>
    <div class="actions">
      ${can("workflows.start") && pipeline.status === "created"
        ? html`<button type="button" onClick=${() => act("start")} disabled=${busy}>Start pipeline</button>` : ""}
      ${can("workflows.stop") && LIVE.includes(pipeline.status)
        ? html`<button type="button" class="danger" onClick=${() => act("stop")} disabled=${busy}>Stop pipeline</button>` : ""}
      ${live ? html`<span class="muted live" aria-live="off">following live (every second)</span>` : ""}
    </div>
    <${ErrorNote} error=${actionError} />
    <${NotReady} error=${actionError} />
    <${StepsTable} pipeline=${pipeline} />
    <h3>Member call log</h3>
    <${CallLog} events=${events} />
    <${ErrorNote} error=${error} />
  </section>`;
}

// The project ids offered: the workspace's ClearML projects and the projects of its pipelines.
function useProjects(pipelines) {
  const [projects, setProjects] = useState([]);
  useEffect(() => {
    rpc("projects.get_all", { only_fields: ["id", "name"], page: 0, page_size: 500 })
      .then((d) => setProjects(d.projects || []), () => setProjects([]));  // a hint only: typing works without it
  }, []);
  const seen = new Map(projects.map((p) => [p.id, p.name]));
  for (const p of pipelines) if (!seen.has(p.project_id)) seen.set(p.project_id, "");
  return [...seen.entries()];
}

function CreatePipeline({ can, members, askAll, asking, pipelines, onCreated, onCancel }) {
  const [steps, setSteps] = useState([]);
  const [startNow, setStartNow] = useState(true);
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const projects = useProjects(pipelines);
  const byId = new Map(members.map((m) => [m.container_id, m]));
  // The server's errors about the steps were about the steps as sent: a change makes them stale.
  const changeSteps = (fn) => {
    setSteps(fn);
    setErrors((errs) => Object.fromEntries(Object.entries(errs).filter(([k]) => !k.startsWith("workflow"))));
  };
  const move = (i, by) => changeSteps((s) => {
    const next = [...s];
    [next[i], next[i + by]] = [next[i + by], next[i]];
    return next;
  });
  const submit = async (event) => {
    event.preventDefault();
    const projectId = new FormData(event.target).get("project_id");
    setBusy(true);
    setErrors({});
    setFailure(null);
    let id;
    try {
      // The workflow is always sent: an empty one is the server's error at the steps, never its default.
      id = (await rpc("workflows.create", { project_id: projectId, workflow: steps })).id;
    } catch (e) {
      const { fields, other } = splitError(e);
      setErrors(fields);
      setFailure(other);
      setBusy(false);
      return;
    }
    let startError = null;
    if (startNow) {
      try { await rpc("workflows.start", { pipeline: id }); } catch (e) { startError = e; }
    }
    setBusy(false);
    onCreated(id, startError);  // created either way: a start that failed is shown on its page
  };
  const stepError = (i) => errors[`workflow.${i}`];
  return html`<form class="create pipeline" onSubmit=${submit} aria-label="Create a pipeline" novalidate>
    <h2>New pipeline</h2>
    <div class="field"><label for="project_id">Project id *</label>
      <input id="project_id" name="project_id" list="project-ids" autocomplete="off" required
        aria-invalid=${errors.project_id ? "true" : null} aria-describedby=${errors.project_id ? "project_id-error" : null} />
      <datalist id="project-ids">${projects.map(([pid, name]) => html`<option value=${pid}>${name}</option>`)}</datalist>
      <${FieldError} id="project_id-error" message=${errors.project_id} /></div>
    <fieldset aria-describedby=${errors.workflow ? "workflow-error" : null}><legend>Steps, in order</legend>
      ${steps.length === 0 ? html`<p class="muted">No steps yet: add members from the list below.</p>` : ""}
      <ol class="chosen" aria-label="Steps in order">${steps.map((cid, i) => html`<li key=${i + cid} class=${stepError(i) ? "invalid" : ""}>
        <span class="step-name"><code>${cid}</code> <${Readiness} member=${byId.get(cid)} /></span>
        <span class="step-buttons">
          <button type="button" class="small" aria-label=${`Move step ${i + 1} up`} disabled=${i === 0} onClick=${() => move(i, -1)}>↑</button>
          <button type="button" class="small" aria-label=${`Move step ${i + 1} down`} disabled=${i === steps.length - 1} onClick=${() => move(i, 1)}>↓</button>
          <button type="button" class="small danger" aria-label=${`Remove step ${i + 1}`} onClick=${() => changeSteps((s) => s.filter((_, j) => j !== i))}>✕</button>
        </span>
        <${FieldError} id=${`workflow-${i}-error`} message=${stepError(i)} /></li>`)}</ol>
      <${FieldError} id="workflow-error" message=${errors.workflow} />
      <h3>Members</h3>
      <div class="scroll"><table aria-label="Members to add">
        <thead><tr><th scope="col">Member</th><th scope="col">Readiness</th><th scope="col">Last status_request answer</th>
          <th scope="col">Asked</th><th scope="col">Source</th><th scope="col"><span class="sr-only">Add</span></th></tr></thead>
        <tbody>${members.map((m) => html`<tr key=${m.container_id}>
          <td><code>${m.container_id}</code></td><td><${Readiness} member=${m} /></td><td>${m.last_answer ?? "—"}</td>
          <td class="nowrap">${m.last_check ? ago(m.last_check) : "—"}</td><td>${m.source}</td>
          <td><button type="button" class="small" aria-label=${`Add ${m.container_id}`} onClick=${() => changeSteps((s) => [...s, m.container_id])}>Add</button></td>
        </tr>`)}</tbody>
      </table></div>
      ${can("workflows.check_members") ? html`<p><button type="button" class="secondary" onClick=${askAll} disabled=${asking}>
        ${asking ? "Asking…" : "Ask every member (status_request)"}</button></p>` : ""}
    </fieldset>
    <fieldset><legend>When</legend>
      <div class="field inline"><input type="radio" id="start-now" name="when" checked=${startNow} onChange=${() => setStartNow(true)} />
        <label for="start-now">Start at once (every member must answer ready)</label></div>
      <div class="field inline"><input type="radio" id="start-later" name="when" checked=${!startNow} onChange=${() => setStartNow(false)} />
        <label for="start-later">Create it now, start it later</label></div>
    </fieldset>
    <div class="actions">
      <button type="submit" disabled=${busy}>${startNow ? "Create and start pipeline" : "Create pipeline"}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
    </div>
    <${ErrorNote} error=${failure} />
  </form>`;
}

function RegisterMember({ known, onRegistered }) {
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    setBusy(true);
    setErrors({});
    setFailure(null);
    try {
      await rpc("members.register", { container_id: form.get("container_id").trim(), url: form.get("url").trim() });
      event.target.reset();
      await onRegistered();
    } catch (e) {
      const { fields, other } = splitError(e);
      setErrors(fields);
      setFailure(other);
    } finally { setBusy(false); }
  };
  const ids = [...new Set([...REFERENCE_IDS, ...known])];
  return html`<form class="register" onSubmit=${submit} aria-label="Register a member" novalidate>
    <h3>Register a member</h3>
    <p class="muted">For this workspace only: its pipelines call this URL instead of the config one. The server refuses
      hosts it never calls (outbound.allow_hosts).</p>
    <div class="register-fields">
      <div class="field"><label for="member-id">Container id</label>
        <input id="member-id" name="container_id" list="member-ids" autocomplete="off"
          aria-invalid=${errors.container_id ? "true" : null} aria-describedby=${errors.container_id ? "member-id-error" : null} />
        <datalist id="member-ids">${ids.map((cid) => html`<option value=${cid} />`)}</datalist>
        <${FieldError} id="member-id-error" message=${errors.container_id} /></div>
      <div class="field grow"><label for="member-url">URL</label>
        <input id="member-url" name="url" type="url" placeholder="http://host:port" autocomplete="off"
          aria-invalid=${errors.url ? "true" : null} aria-describedby=${errors.url ? "member-url-error" : null} />
        <${FieldError} id="member-url-error" message=${errors.url} /></div>
      <div class="field submit"><button type="submit" disabled=${busy}>Register</button></div>
    </div>
    <${ErrorNote} error=${failure} />
  </form>`;
}

function Members({ can, members, reload, askAll, asking, askError }) {
  const [rowErrors, setRowErrors] = useState({});
  const [busy, setBusy] = useState(null);
  const rowAction = async (cid, fn) => {
    setBusy(cid);
    setRowErrors((r) => ({ ...r, [cid]: null }));
    try { await fn(); await reload(); } catch (e) { setRowErrors((r) => ({ ...r, [cid]: e })); } finally { setBusy(null); }
  };
  const ask = (cid) => rowAction(cid, () => rpc("workflows.check_members", { container_ids: [cid] }));
  const remove = (cid) => rowAction(cid, () => rpc("members.remove", { container_id: cid }));
  return html`<section aria-label="Members">
    <h2>Members</h2>
    ${can("workflows.check_members") ? html`<button type="button" onClick=${askAll} disabled=${asking}>
      ${asking ? "Asking…" : "Ask every member (status_request)"}</button>` : ""}
    <${ErrorNote} error=${askError} />
    <div class="scroll"><table aria-label="Members">
      <thead><tr><th scope="col">Member</th><th scope="col">URL</th><th scope="col">Source</th>
        <th scope="col">Ready</th><th scope="col">Last status_request answer</th><th scope="col">Asked</th>
        <th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${members.map((m) => html`<tr key=${m.container_id}>
        <td><code>${m.container_id}</code></td><td>${m.url || "—"}</td><td>${m.source}</td>
        <td class="nowrap">${m.ready === null || m.ready === undefined ? "not asked" : m.ready ? "ready" : "not ready"}</td>
        <td>${m.last_answer ?? "—"}</td><td class="nowrap">${m.last_check ? ago(m.last_check) : "—"}</td>
        <td class="row-actions">
          ${can("workflows.check_members") ? html`<button type="button" class="small secondary" disabled=${busy === m.container_id}
            aria-label=${`Ask ${m.container_id}`} onClick=${() => ask(m.container_id)}>Ask</button>` : ""}
          ${can("members.remove") && m.source === "registered" ? html`<button type="button" class="small danger"
            disabled=${busy === m.container_id} aria-label=${`Remove ${m.container_id}`} onClick=${() => remove(m.container_id)}>Remove</button>` : ""}
          ${rowErrors[m.container_id] ? html`<span class="field-error" role="alert">${rowErrors[m.container_id].message}</span>` : ""}
        </td></tr>`)}</tbody>
    </table></div>
    ${can("members.register") ? html`<${RegisterMember} known=${members.map((m) => m.container_id)} onRegistered=${reload} />` : ""}
  </section>`;
}

function readView() {
  const q = new URLSearchParams(location.search);
  return q.get("new") !== null ? { create: true } : { pipeline: q.get("pipeline") };
}

export function PipelinesPage({ can }) {
  const [crash, resetCrash] = useErrorBoundary();
  const [pipelines, setPipelines] = useState([]);
  const [members, setMembers] = useState([]);
  const [view, setView] = useState(readView);
  const [startError, setStartError] = useState(null);
  const [asking, setAsking] = useState(false);
  const [askError, setAskError] = useState(null);
  const load = async () => setPipelines((await rpc("workflows.get_all", { page: 0, page_size: 100 })).pipelines);
  // The chosen pipeline's card shows what its page just read, not the list's older read.
  const seen = (p) => setPipelines((list) => list.map((q) => (q.id === p.id ? p : q)));
  const loadMembers = async () => setMembers((await rpc("members.get_all")).members);
  const error = usePoll(load, 3000);
  const membersError = usePoll(loadMembers, 5000);
  const show = (next, query) => {
    setView(next);
    setStartError(null);
    history.replaceState(null, "", location.pathname + query);
  };
  const choose = (id) => show({ pipeline: id }, `?pipeline=${encodeURIComponent(id)}`);
  const askAll = async () => {
    setAsking(true);
    setAskError(null);
    try { await rpc("workflows.check_members", {}); await loadMembers(); } catch (e) { setAskError(e); } finally { setAsking(false); }
  };
  const created = async (id, failedStart) => {
    choose(id);
    setStartError(failedStart);
    await Promise.all([load(), loadMembers()]);
  };
  if (crash) {
    return html`<section><${ErrorNote} error=${crash} />
      <button type="button" onClick=${resetCrash}>Show the pipelines again</button></section>`;
  }
  const creating = view.create && can("workflows.create");
  return html`<div><div class="two-columns">
    <section aria-label="Pipelines">
      ${can("workflows.create") ? html`<p><button type="button" aria-pressed=${Boolean(creating)}
        onClick=${() => show({ create: true }, "?new")}>New pipeline</button></p>` : ""}
      <${ErrorNote} error=${error} />
      ${pipelines.length === 0 ? html`<p class="muted">No pipelines in this workspace.</p>` : ""}
      <ul class="cards">${pipelines.map((p) => {
        const { done, total } = progress(p);
        return html`<li key=${p.id} class=${p.id === view.pipeline ? "selected" : ""}>
          <button type="button" class="card" onClick=${() => choose(p.id)} aria-pressed=${p.id === view.pipeline}>
            <span class="title"><code>${p.project_id}</code> <${Status} value=${p.status} /></span>
            <progress max=${total} value=${done} aria-label=${`Steps done of pipeline ${p.id}`}>${done}/${total}</progress>
            <span class="muted">${done} of ${total} steps · ${p.steps.map((s) => s.container_id).join(" → ")}</span>
          </button></li>`;
      })}</ul>
    </section>
    <div>
      ${creating ? html`<${CreatePipeline} can=${can} members=${members} askAll=${askAll} asking=${asking}
          pipelines=${pipelines} onCreated=${created} onCancel=${() => show({}, "")} />`
        : view.pipeline ? html`<${PipelineDetail} id=${view.pipeline} can=${can} onChanged=${load} onSeen=${seen} startError=${startError} />`
        : html`<p class="muted">Choose a pipeline to see its steps and member calls${can("workflows.create") ? ", or make a new one" : ""}.</p>`}
    </div>
  </div>
  <${ErrorNote} error=${membersError} />
  <${Members} can=${can} members=${members} reload=${loadMembers} askAll=${askAll} asking=${asking} askError=${askError} />
  </div>`;
}
