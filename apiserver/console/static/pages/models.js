// The model registry of the workspace: models, versions, schemas, explainer chains, invoke.
import { html, rest, useState, usePoll, when, ErrorNote } from "../lib.js";
import { Validator } from "../vendor/cfworker-json-schema-4.1.1/index.js";

function typeOf(s) {
  if (!s || typeof s !== "object") return "any";
  if (s.enum) return "one of " + s.enum.map((v) => JSON.stringify(v)).join(", ");
  const t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || (s.$ref ? s.$ref.replace("#/definitions/", "") : "any");
  return t === "array" && s.items ? `array of ${typeOf(s.items)}` : t;
}

function rules(s) {
  const out = [];
  for (const [k, label] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"],
    ["minLength", "length ≥"], ["maxLength", "length ≤"], ["minItems", "items ≥"], ["maxItems", "items ≤"]]) {
    if (s[k] !== undefined) out.push(`${label} ${s[k]}`);
  }
  if (s.pattern) out.push(`matches ${s.pattern}`);
  if (s.format) out.push(`format ${s.format}`);
  if (s.default !== undefined) out.push(`default ${JSON.stringify(s.default)}`);
  return out.join(", ");
}

// A JSON Schema as a table of fields (nested objects indented), not raw JSON.
function fieldRows(schema, prefix = "") {
  const required = new Set(schema.required || []);
  const rows = [];
  for (const [name, sub] of Object.entries(schema.properties || {})) {
    const path = prefix + name;
    rows.push(html`<tr><td><code>${path}</code></td><td>${typeOf(sub)}</td><td>${required.has(name) ? "yes" : "no"}</td>
      <td>${rules(sub)}</td><td>${sub.description || ""}</td></tr>`);
    if (sub && sub.type === "object" && sub.properties) rows.push(...fieldRows(sub, path + "."));
  }
  return rows;
}

function SchemaTable({ schema, label }) {
  const rows = fieldRows(schema || {});
  if (!rows.length) return html`<p class="muted">${typeOf(schema)} (no named fields)</p>`;
  return html`<div class="scroll"><table aria-label=${label}>
    <thead><tr><th scope="col">Field</th><th scope="col">Type</th><th scope="col">Required</th><th scope="col">Rules</th><th scope="col">Description</th></tr></thead>
    <tbody>${rows}</tbody></table></div>`;
}

function IoSchema({ io, label }) {
  if (!io) return null;
  return html`<div class="io">
    <h4>${label}: ${io.type}${io.description ? html` — <span class="muted">${io.description}</span>` : ""}</h4>
    <${SchemaTable} schema=${io.schema} label=${label + " fields"} />
    ${io.type === "file" ? html`<dl class="file-rules">
      <dt>Media types</dt><dd>${(io.fileConstraints?.mediaTypes || []).join(", ")}</dd>
      ${io.fileConstraints?.maxSizeMb ? html`<dt>Largest file</dt><dd>${io.fileConstraints.maxSizeMb} MB</dd>` : ""}
      <dt>Content</dt><dd>${io.contentSchema?.format}${io.contentSchema?.delimiter ? ` delimited by "${io.contentSchema.delimiter}"` : ""}</dd>
      ${io.contentSchema?.requiredColumns ? html`<dt>Required columns</dt><dd>${io.contentSchema.requiredColumns.join(", ")}</dd>` : ""}
      ${io.contentSchema?.optionalColumns ? html`<dt>Optional columns</dt><dd>${io.contentSchema.optionalColumns.join(", ")}</dd>` : ""}
      ${io.contentSchema?.manifest ? html`<dt>Archive holds</dt><dd>${io.contentSchema.manifest.map((m) => `${m.path}${m.required ? " (required)" : ""}`).join(", ")}</dd>` : ""}
      ${io.contentSchema?.width ? html`<dt>Image</dt><dd>${io.contentSchema.width}×${io.contentSchema.height || "?"}, ${io.contentSchema.channels || "?"} channels</dd>` : ""}
    </dl>` : ""}
  </div>`;
}

function fieldValue(sub, raw) {
  const t = Array.isArray(sub.type) ? sub.type.find((x) => x !== "null") : sub.type;
  if (raw === "") return undefined;
  if (t === "number" || t === "integer") { const n = Number(raw); return Number.isNaN(n) ? raw : n; }
  if (t === "boolean") return raw === "true";
  if (t === "object" || t === "array") { try { return JSON.parse(raw); } catch { return raw; } }
  return raw;
}

function InvokeForm({ model }) {
  const schema = model.input_schema.schema || {};
  const props = Object.entries(schema.properties || {});
  const required = new Set(schema.required || []);
  const [errors, setErrors] = useState({});
  const [answer, setAnswer] = useState(null);
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const id = (name) => `invoke-${model.model_code}-${model.version}-${name}`.replace(/[^A-Za-z0-9_-]/g, "_");
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const payload = {};
    for (const [name, sub] of props) {
      const v = fieldValue(sub, String(form.get(name) ?? ""));
      if (v !== undefined) payload[name] = v;
    }
    setAnswer(null);
    setFailure(null);
    if (form.get("check") === "on") {
      const result = new Validator(schema, "7", false).validate(payload);
      if (!result.valid) {
        const found = {};
        for (const e of result.errors) {
          const missing = e.keyword === "required" && /"([^"]+)"/.exec(e.error);
          const field = missing ? missing[1] : e.instanceLocation.replace(/^#\/?/, "").split("/")[0];
          if (field && !found[field] && e.keyword !== "properties") found[field] = e.error;
        }
        setErrors(Object.keys(found).length ? found : { "": result.errors[0].error });
        return;
      }
    }
    setErrors({});
    setBusy(true);
    try {
      setAnswer(await rest("POST", `/api/model/${encodeURIComponent(model.model_code)}/version/${encodeURIComponent(model.version)}/invoke`, payload));
    } catch (e) {
      if (e.field !== null && e.status === 400) setErrors({ [e.field]: `server: ${e.message}` });
      else setFailure(e);
    } finally { setBusy(false); }
  };
  return html`<form class="invoke" onSubmit=${submit} noValidate aria-label=${`Invoke ${model.model_code} ${model.version}`}>
    <h4>Invoke</h4>
    ${props.map(([name, sub]) => {
      const t = Array.isArray(sub.type) ? sub.type.find((x) => x !== "null") : sub.type;
      const err = errors[name];
      const common = { id: id(name), name, "aria-invalid": err ? "true" : null, "aria-describedby": err ? id(name) + "-error" : null };
      return html`<div class="field">
        <label for=${id(name)}>${name}${required.has(name) ? " *" : ""} <span class="muted">(${typeOf(sub)})</span></label>
        ${sub.enum ? html`<select ...${common}><option value="">—</option>${sub.enum.map((v) => html`<option value=${v}>${String(v)}</option>`)}</select>`
          : t === "boolean" ? html`<select ...${common}><option value="">—</option><option value="true">true</option><option value="false">false</option></select>`
          : t === "object" || t === "array" ? html`<textarea rows="3" ...${common} placeholder="JSON"></textarea>`
          : html`<input ...${common} inputmode=${t === "number" || t === "integer" ? "decimal" : null} />`}
        ${err ? html`<span class="field-error" id=${id(name) + "-error"} role="alert">${err}</span>` : ""}
      </div>`;
    })}
    ${errors[""] ? html`<p class="field-error" role="alert">${errors[""]}</p>` : ""}
    <div class="field inline"><input type="checkbox" id=${id("check")} name="check" checked />
      <label for=${id("check")}>Check against the input schema in the page first</label></div>
    <button type="submit" disabled=${busy}>Invoke</button>
    <${ErrorNote} error=${failure} />
    ${answer !== null ? html`<div class="answer" aria-label="Answer"><h5>Answer</h5><pre>${JSON.stringify(answer, null, 2)}</pre></div>` : ""}
  </form>`;
}

function chainOf(model) {
  const chain = [];
  for (let node = model.explainer; node; node = node.explainer) chain.push(node);
  return chain;
}

function Version({ model, can }) {
  const deleted = Boolean(model.deleted);
  const chain = chainOf(model);
  return html`<article class=${"version" + (deleted ? " deleted" : "")} aria-label=${`${model.model_code} version ${model.version}`}>
    <h3>Version <code>${model.version}</code> ${deleted ? html`<span class="badge deleted">deleted ${when(model.deleted)}</span>` : ""}</h3>
    <p><strong>${model.name}</strong> — ${model.description}</p>
    <p class="muted">created ${when(model.created)} · deployment ${model.deployment_key ? html`<code>${model.deployment_key}</code>` : "none"}
      ${model.realtime_execution ? " · realtime" : ""}${model.allow_download ? " · downloadable" : ""}${model.need_context ? " · needs context" : ""}</p>
    <${IoSchema} io=${model.input_schema} label="Input" />
    <${IoSchema} io=${model.output_schema} label="Output" />
    ${chain.length ? html`<div class="chain"><h4>Explainer chain</h4>
      <ol>${chain.map((e) => html`<li><code>${e.model_code}</code> <code>${e.version}</code> — ${e.name}
        ${e.deleted ? html`<span class="badge deleted">deleted</span>` : ""}
        <details><summary>Schemas of ${e.model_code}</summary><${IoSchema} io=${e.input_schema} label="Input" /><${IoSchema} io=${e.output_schema} label="Output" /></details></li>`)}</ol></div>` : ""}
    ${!deleted && model.input_schema?.type === "json" && can("registry.invoke") ? html`<${InvokeForm} model=${model} />` : ""}
  </article>`;
}

export function ModelsPage({ can, session }) {
  const [models, setModels] = useState(null);
  const error = usePoll(async () => setModels(await rest("GET", "/api/model?include_deleted=true&page_size=500")), 0);
  if (!models) return html`<${ErrorNote} error=${error} />`;
  const byCode = new Map();
  for (const m of models) {
    if (!byCode.has(m.model_code)) byCode.set(m.model_code, []);
    byCode.get(m.model_code).push(m);
  }
  return html`<div>
    <p class="muted">Workspace <strong>${session.company.name || session.company.id}</strong>: ${byCode.size} model${byCode.size === 1 ? "" : "s"}, ${models.length} version${models.length === 1 ? "" : "s"}.</p>
    <${ErrorNote} error=${error} />
    ${[...byCode.entries()].map(([code, versions]) => html`<section key=${code} class="model" aria-label=${"Model " + code}>
      <h2><code>${code}</code> <span class="muted">${versions.length} version${versions.length === 1 ? "" : "s"}</span></h2>
      ${versions.map((m) => html`<${Version} key=${m.version} model=${m} can=${can} />`)}
    </section>`)}
  </div>`;
}
