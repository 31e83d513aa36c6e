// The render farm: tasks with their frame progress (live), cancel and priority; workers, enable/disable.
import { html, rest, useState, usePoll, ago, Status, ErrorNote } from "../lib.js";

// frame_current is where the task has got to: frame_start when created, frame_end when done.
function frames(t) {
  const total = t.frame_end - t.frame_start;
  const at = t.frame_current ?? t.frame_start;
  const done = t.status === "completed" ? total : Math.min(total, Math.max(0, at - t.frame_start));
  return { done, total: Math.max(total, 1), at };
}

function Priority({ task, onSaved, onError }) {
  const [value, setValue] = useState(String(task.priority));
  const id = `priority-${task.id}`;
  const save = async (event) => {
    event.preventDefault();
    try { await rest("PATCH", `/tasks/${task.id}`, { priority: Number(value) }); onSaved(); } catch (e) { onError(e); }
  };
  return html`<form class="inline" onSubmit=${save}>
    <label class="sr-only" for=${id}>Priority of task ${task.id}</label>
    <input id=${id} type="number" step="1" value=${value} onInput=${(e) => setValue(e.target.value)} class="narrow" />
    <button type="submit" aria-label=${`Save the priority for task ${task.id}`}>Save</button>
  </form>`;
}

export function RenderPage({ can }) {
  const [tasks, setTasks] = useState([]);
  const [workers, setWorkers] = useState({});
  const [actionError, setActionError] = useState(null);
  const load = async () => {
    const [t, w] = await Promise.all([rest("GET", "/tasks"), rest("GET", "/workers")]);
    setTasks(t);
    setWorkers(w);
  };
  const error = usePoll(load, 1000);
  const act = async (fn) => { setActionError(null); try { await fn(); await load(); } catch (e) { setActionError(e); } };
  const cancel = (t) => act(() => rest("PATCH", `/tasks/${t.id}`, { status: "canceled" }));
  const setStatus = (w, status) => act(() => rest("POST", `/workers/${w.id}/setstatus`, { status }));
  const editable = can("manager.update_task");
  return html`<div>
    <${ErrorNote} error=${actionError || error} />
    <section aria-label="Tasks">
      <h2>Tasks</h2>
      ${tasks.length === 0 ? html`<p class="muted">No tasks in this workspace.</p>` : ""}
      <div class="scroll"><table aria-label="Tasks">
        <thead><tr><th scope="col">Task</th><th scope="col">Status</th><th scope="col">Frames</th><th scope="col">Priority</th>
          <th scope="col">Type</th><th scope="col">Worker</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${tasks.map((t) => {
          const { done, total, at } = frames(t);
          return html`<tr key=${t.id} data-task=${t.id}>
            <td>${t.id}</td><td><${Status} value=${t.status} /></td>
            <td class="frames"><progress max=${total} value=${done} aria-label=${`Frames rendered of task ${t.id}`}>${done}/${total}</progress>
              <span>frame ${t.status === "completed" ? t.frame_end : at} of ${t.frame_start}–${t.frame_end}</span></td>
            <td>${editable && ["waiting", "rendering"].includes(t.status)
              ? html`<${Priority} key=${t.id + ":" + t.priority} task=${t} onSaved=${load} onError=${setActionError} />` : t.priority}</td>
            <td>${t.type}</td>
            <td>${t.worker_id ?? "—"}</td>
            <td>${editable && ["waiting", "rendering"].includes(t.status)
              ? html`<button type="button" class="danger" onClick=${() => cancel(t)}>Cancel task ${t.id}</button>` : ""}</td>
          </tr>`;
        })}</tbody>
      </table></div>
    </section>
    <section aria-label="Workers">
      <h2>Workers</h2>
      ${Object.keys(workers).length === 0 ? html`<p class="muted">No workers have registered.</p>` : ""}
      <div class="scroll"><table aria-label="Workers">
        <thead><tr><th scope="col">Host</th><th scope="col">Status</th><th scope="col">Last seen</th>
          <th scope="col">Connection</th><th scope="col">Worker</th><th scope="col">Task</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${Object.values(workers).map((w) => html`<tr key=${w.id} data-worker=${w.id}>
          <td>${w.hostname}</td><td><${Status} value=${w.status} /></td><td>${ago(w.last_seen)}</td>
          <td>${w.connection}</td><td>${w.id}</td><td>${w.current_task ?? "—"}</td>
          <td>${can("manager.set_worker_status") ? (w.status === "disabled"
            ? html`<button type="button" onClick=${() => setStatus(w, "enabled")}>Enable ${w.hostname}</button>`
            : html`<button type="button" class="danger" onClick=${() => setStatus(w, "disabled")}>Disable ${w.hostname}</button>`) : ""}</td>
        </tr>`)}</tbody>
      </table></div>
    </section>
  </div>`;
}
