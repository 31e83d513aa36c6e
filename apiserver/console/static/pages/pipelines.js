// Pipelines of the pipeline leader: progress, steps, the member call log, start/stop, members.
import { html, rpc, useState, usePoll, when, ago, Status, ErrorNote } from "../lib.js";

function progress(p) {
  const done = p.steps.filter((s) => s.status === "completed").length;
  return { done, total: p.steps.length };
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

function PipelineDetail({ id, can, onChanged }) {
  const [pipeline, setPipeline] = useState(null);
  const [events, setEvents] = useState([]);
  const [actionError, setActionError] = useState(null);
  const [busy, setBusy] = useState(false);
  const error = usePoll(async () => {
    const [p, log] = await Promise.all([rpc("workflows.get_by_id", { pipeline: id }), rpc("workflows.get_log", { pipeline: id })]);
    setPipeline(p.pipeline);
    setEvents(log.events);
  }, 2000, [id]);
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
      ${can("workflows.stop") && ["created", "running"].includes(pipeline.status)
        ? html`<button type="button" class="danger" onClick=${() => act("stop")} disabled=${busy}>Stop pipeline</button>` : ""}
    </div>
    <${ErrorNote} error=${actionError} />
    ${actionError && actionError.data.members ? html`<ul class="not-ready">${actionError.data.members.filter((m) => !m.ready).map((m) =>
      html`<li><code>${m.container_id}</code>: ${m.answer ? `answered ${m.answer}` : m.error}</li>`)}</ul>` : ""}
    <${StepsTable} pipeline=${pipeline} />
    <h3>Member call log</h3>
    <${CallLog} events=${events} />
    <${ErrorNote} error=${error} />
  </section>`;
}

function Members({ can }) {
  const [members, setMembers] = useState([]);
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState(null);
  const load = async () => setMembers((await rpc("members.get_all")).members);
  const error = usePoll(load, 5000);
  const check = async () => {
    setBusy(true);
    setActionError(null);
    try { await rpc("workflows.check_members", {}); await load(); } catch (e) { setActionError(e); } finally { setBusy(false); }
  };
  return html`<section aria-label="Members">
    <h2>Members</h2>
    ${can("workflows.check_members") ? html`<button type="button" onClick=${check} disabled=${busy}>Ask every member (status_request)</button>` : ""}
    <${ErrorNote} error=${actionError || error} />
    <div class="scroll"><table aria-label="Members">
      <thead><tr><th scope="col">Member</th><th scope="col">URL</th><th scope="col">Source</th>
        <th scope="col">Ready</th><th scope="col">Last status_request answer</th><th scope="col">Asked</th></tr></thead>
      <tbody>${members.map((m) => html`<tr key=${m.container_id}>
        <td><code>${m.container_id}</code></td><td>${m.url || "—"}</td><td>${m.source}</td>
        <td>${m.ready === null || m.ready === undefined ? "not asked" : m.ready ? "ready" : "not ready"}</td>
        <td>${m.last_answer ?? "—"}</td><td>${m.last_check ? ago(m.last_check) : "—"}</td></tr>`)}</tbody>
    </table></div>
  </section>`;
}

export function PipelinesPage({ can }) {
  const [pipelines, setPipelines] = useState([]);
  const [selected, setSelected] = useState(() => new URLSearchParams(location.search).get("pipeline"));
  const load = async () => setPipelines((await rpc("workflows.get_all", { page: 0, page_size: 100 })).pipelines);
  const error = usePoll(load, 3000);
  const choose = (id) => {
    setSelected(id);
    history.replaceState(null, "", `?pipeline=${encodeURIComponent(id)}`);
  };
  return html`<div class="two-columns">
    <section aria-label="Pipelines">
      <${ErrorNote} error=${error} />
      ${pipelines.length === 0 ? html`<p class="muted">No pipelines in this workspace.</p>` : ""}
      <ul class="cards">${pipelines.map((p) => {
        const { done, total } = progress(p);
        return html`<li key=${p.id} class=${p.id === selected ? "selected" : ""}>
          <button type="button" class="card" onClick=${() => choose(p.id)} aria-pressed=${p.id === selected}>
            <span class="title"><code>${p.project_id}</code> <${Status} value=${p.status} /></span>
            <progress max=${total} value=${done} aria-label=${`Steps done of pipeline ${p.id}`}>${done}/${total}</progress>
            <span class="muted">${done} of ${total} steps · ${p.steps.map((s) => s.container_id).join(" → ")}</span>
          </button></li>`;
      })}</ul>
    </section>
    <div>
      ${selected ? html`<${PipelineDetail} id=${selected} can=${can} onChanged=${load} />` : html`<p class="muted">Choose a pipeline to see its steps and member calls.</p>`}
      <${Members} can=${can} />
    </div>
  </div>`;
}
