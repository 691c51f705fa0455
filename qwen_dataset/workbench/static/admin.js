// Admin page: users, API tokens, settings, prelabel templates and batches.
"use strict";

function td(text) {
  const cell = document.createElement("td");
  cell.textContent = text === null || text === undefined ? "" : String(text);
  return cell;
}

function button(label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", () => onClick().catch((failure) => flash(failure.message, true)));
  return element;
}

async function loadUsers() {
  const body = document.querySelector("#users tbody");
  body.replaceChildren();
  for (const user of await api("GET", "/api/admin/users")) {
    const row = document.createElement("tr");
    const actions = document.createElement("td");
    actions.append(button(user.active ? "Deactivate" : "Activate", async () => {
      await api("PATCH", "/api/admin/users/" + user.id, { active: !user.active });
      await loadUsers();
    }));
    row.append(td(user.username), td(user.role), td(user.active ? "yes" : "no"), actions);
    body.append(row);
  }
}

async function loadTokens() {
  const body = document.querySelector("#tokens tbody");
  body.replaceChildren();
  for (const token of await api("GET", "/api/admin/tokens")) {
    const row = document.createElement("tr");
    const actions = document.createElement("td");
    if (!token.revoked) actions.append(button("Revoke", async () => { await api("DELETE", "/api/admin/tokens/" + token.id); await loadTokens(); }));
    else actions.textContent = "revoked";
    row.append(td(token.name), td(token.prefix + "…"), td(token.last_used_at || "never"), actions);
    body.append(row);
  }
}

const SETTINGS = ["double_rate", "agreement_iou", "agreement_tiou", "agreement_text"];

async function loadSettings() {
  const settings = await api("GET", "/api/admin/settings");
  const form = document.getElementById("settings-form");
  for (const name of SETTINGS) form[name].value = settings[name];
}

// The batches the pipeline pre-annotated, imported or not: a table with an Import button per
// batch, and the batch pickers of the forms (an admin never types a batch's name).
async function loadBatches(selected) {
  const data = await api("GET", "/api/batches");
  const body = document.querySelector("#batch-table tbody");
  const rows = [
    ...data.not_imported.map((batch) => ({ batch, imported: null })),
    ...data.imported.map((entry) => ({ batch: entry.batch, imported: entry })),
  ];
  body.replaceChildren(...rows.map(({ batch, imported }) => {
    const row = document.createElement("tr");
    row.dataset.batch = batch;
    const counts = imported ? Object.entries(imported.items).map(([status, count]) => count + " " + status).join(", ") : "";
    const actions = document.createElement("td");
    actions.append(button(imported ? "Import new items" : "Import", () => importBatch(batch)));
    row.append(td(batch), td(imported ? "since " + imported.imported_at : "not yet"), td(counts), actions);
    return row;
  }));
  if (!rows.length) {
    const row = document.createElement("tr");
    const cell = td("No batch is pre-annotated yet: materialize ai_annotations for a batch in Dagster.");
    cell.colSpan = 4;
    row.append(cell);
    body.append(row);
  }
  const imported = data.imported.map((entry) => entry.batch);
  for (const picker of document.querySelectorAll("select.batch-picker")) {
    const names = picker.dataset.picks === "imported" ? imported : [...data.not_imported, ...imported];
    const keep = selected || picker.value;
    picker.replaceChildren(...names.map((name) => { const option = document.createElement("option"); option.textContent = name; return option; }));
    if (names.includes(keep)) picker.value = keep;
  }
}

async function importBatch(batch) {
  const summary = await api("POST", "/api/batches/" + encodeURIComponent(batch) + "/import");
  flash("Imported " + summary.items_created + " item(s) of " + batch + ", " + summary.double_blind_items + " double-blind", false);
  await loadBatches(batch);
}

let templates = [];
function showTemplate(task) {
  const form = document.getElementById("template-form");
  const template = templates.find((entry) => entry.task === task);
  for (const name of ["template.yaml", "prompt.txt", "schema.json", "example.json"]) form.elements[name].value = template.files[name];
  document.getElementById("template-version").textContent = "version " + template.version_tag + (template.overridden ? " (edited " + template.updated_at + ")" : " (packaged)");
}

async function loadTemplates(selected) {
  templates = await api("GET", "/api/admin/templates");
  const select = document.getElementById("template-task");
  select.replaceChildren(...templates.map((entry) => { const option = document.createElement("option"); option.textContent = entry.task; return option; }));
  select.value = selected || templates[0].task;
  showTemplate(select.value);
}

function onSubmit(id, handler) {
  document.getElementById(id).addEventListener("submit", (event) => {
    event.preventDefault();
    handler(event.target).catch((failure) => flash(failure.message, true));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  Promise.all([loadUsers(), loadTokens(), loadSettings(), loadBatches(), loadTemplates()]).catch((failure) => flash(failure.message, true));
  onSubmit("user-form", async (form) => {
    await api("POST", "/api/admin/users", { username: form.username.value, password: form.password.value, role: form.role.value });
    form.reset();
    flash("User created", false);
    await loadUsers();
  });
  onSubmit("token-form", async (form) => {
    const created = await api("POST", "/api/admin/tokens", { name: form.name.value });
    const box = document.getElementById("new-token");
    box.textContent = created.token + " (" + created.note + ")";
    box.hidden = false;
    form.reset();
    await loadTokens();
  });
  onSubmit("settings-form", async (form) => {
    await api("PUT", "/api/admin/settings", Object.fromEntries(SETTINGS.map((name) => [name, Number(form[name].value)])));
    flash("Settings saved", false);
  });
  onSubmit("import-form", (form) => importBatch(form.batch.value));
  onSubmit("ls-export-form", async (form) => {
    window.location = "/api/batches/" + encodeURIComponent(form.batch.value) + "/label-studio?task=" + encodeURIComponent(form.task.value);
  });
  onSubmit("ls-import-form", async (form) => {
    const text = await form.file.files[0].text();
    const report = await api("POST", "/api/batches/" + encodeURIComponent(form.batch.value) + "/label-studio", JSON.parse(text));
    flash("Imported " + report.imported + ", updated " + report.updated + ", failed " + report.failed.length, report.failed.length > 0);
  });
  document.getElementById("template-task").addEventListener("change", (event) => showTemplate(event.target.value));
  onSubmit("template-form", async (form) => {
    const files = {};
    for (const name of ["template.yaml", "prompt.txt", "schema.json", "example.json"]) files[name] = form.elements[name].value;
    await api("PUT", "/api/admin/templates/" + form.task.value, files);
    flash("Template saved", false);
    await loadTemplates(form.task.value);
  });
  document.getElementById("template-reset").addEventListener("click", async () => {
    const task = document.getElementById("template-task").value;
    await api("DELETE", "/api/admin/templates/" + task).catch((failure) => flash(failure.message, true));
    await loadTemplates(task);
  });
});
