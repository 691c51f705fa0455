// The editor pages: the Label Studio editor (window.LabelStudio, from the pinned npm build) on
// one work item, or for a video the timeline editor (static/timeline.js). Annotators: every
// change is saved at once as a draft, with the version the editor started from (a stale version
// is refused with 409 and the page says so); Submit sends it on. Reviewers: compare both blind
// versions and the AI's, then accept one or save a merge.
"use strict";

const root = document.getElementById("label-studio");
const statusBox = document.getElementById("save-status");
const SAVE_EVERY_MS = 800;
const VIDEO_TASK = "video_event";
let store = null; // Label Studio's root store, set when the editor has loaded
let timeline = null; // the timeline editor, on a video item
let codeEditor = null; // the HTML editor, on an image_to_code item
const CODE_TASK = "image_to_code";
const OCR_TASK = "ocr";
const SPATIAL_TASK = "spatial";

// The server's refusals of a save already begin with "not saved: ".
function notSaved(failure) {
  return /^not saved/i.test(failure.message) ? failure.message.replace(/^not saved/i, "Not saved") : "Not saved: " + failure.message;
}

function setStatus(text, kind) {
  statusBox.textContent = text;
  statusBox.className = "save-status " + (kind || "");
}

function showNote(id, text) {
  const box = document.getElementById(id);
  if (!box || !text) return;
  box.textContent = text;
  box.hidden = false;
}

function selectedAnnotation() {
  return store && store.annotationStore ? store.annotationStore.selected : null;
}

function currentResult() {
  if (timeline) return timeline.result();
  const annotation = selectedAnnotation();
  if (!annotation) return null;
  const result = annotation.serializeAnnotation();
  return codeEditor ? withHtml(result, codeEditor.value()) : result;
}

// Give the editor new results (a merge or split of OCR lines), as it does itself between drafts.
function replaceResults(results) {
  const annotation = selectedAnnotation();
  annotation.deleteAllRegions({ deleteReadOnly: true });
  annotation.deserializeResults(results);
  annotation.updateObjects();
  if (window.workbenchSaver) window.workbenchSaver.flush();
}

// The HTML of a generated page goes to the code editor, the rest to Label Studio.
function forLabelStudio(task) {
  if (root.dataset.task !== CODE_TASK) return task;
  const predictions = (task.predictions || []).map((prediction) => ({ ...prediction, result: withoutHtml(prediction.result) }));
  return { ...task, predictions };
}

function startTools(data, html, editable) {
  if (root.dataset.task === CODE_TASK) {
    const width = data.task.data.width, height = data.task.data.height;
    codeEditor = startCodeEditor(document.getElementById("code-editor"), data.task.data.image, width, height, html,
                                 () => window.workbenchSaver && setTimeout(() => window.workbenchSaver.flush(), 300));
    codeEditor.setEditable(editable);
  }
}

function startEditor(config, task, annotations, interfaces, hooks) {
  if (typeof LabelStudio === "undefined") {
    setStatus("The Label Studio editor is not installed on the server.", "failed");
    return null;
  }
  return new LabelStudio("label-studio", {
    config,
    interfaces,
    user: { id: 1, first_name: root.dataset.user, last_name: "", username: root.dataset.user },
    task: { id: 1, data: task.data, annotations, predictions: task.predictions || [] },
    onLabelStudioLoad: (ls) => { store = ls; window.workbenchStore = ls; if (hooks.loaded) hooks.loaded(ls); },
    onSubmitAnnotation: () => hooks.submit && hooks.submit(),
    onUpdateAnnotation: () => hooks.submit && hooks.submit(),
    onSubmitDraft: () => (hooks.draft ? hooks.draft() : Promise.resolve()),
  });
}

// The Label Studio editor (1.4.0) picks a region's label in the labels bar when the region is
// selected, and leaves it picked when the user clicks elsewhere, so the next drag on the picture,
// meant to select or to pan, drew and autosaved a new box with that label. A new box needs a
// label the user picked for it (a click on it in the labels bar, or its hotkey): any other drag
// on the picture starts with no label picked, and draws nothing.
function labelControls(annotation) {
  return [...annotation.names.values()].filter((control) => /labels$/.test(control.type || "") && control.unselectAll);
}

function pickedLabels(annotation) {
  return labelControls(annotation).some((control) => control.selectedLabels.length > 0);
}

// Whether the press lands on a shape the editor drew (a region, its handles) on the picture's stage.
function startsOnRegion(annotation, event) {
  for (const control of annotation.names.values()) {
    const stage = control.stageRef;
    if (!stage || !stage.container().contains(event.target)) continue;
    // The point in the stage's own pixels, computed here: the editor's pointer state is its own.
    const box = stage.container().getBoundingClientRect();
    return Boolean(stage.getIntersection({ x: event.clientX - box.left, y: event.clientY - box.top }));
  }
  return false;
}

function guardStrayBoxes(container) {
  let picked = false;
  const notePick = () => setTimeout(() => {
    const annotation = selectedAnnotation();
    picked = Boolean(annotation && pickedLabels(annotation));
  }, 0);
  container.addEventListener("click", (event) => { if (event.target.closest(".lsf-label")) notePick(); }, true);
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (!typing && /^[0-9]$/.test(event.key)) notePick(); // the labels' hotkeys
  }, true);
  // Before the editor's own handler (its canvas listens to pointer and mouse events). A press on
  // a region moves or resizes it, which needs no label: left alone.
  container.addEventListener("pointerdown", (event) => {
    if (!event.target.closest("canvas")) return;
    const annotation = selectedAnnotation();
    if (!annotation || startsOnRegion(annotation, event)) return;
    if (picked) { picked = false; return; } // this drag draws the box the label was picked for
    for (const control of labelControls(annotation)) {
      if (control.selectedLabels.length) control.unselectAll();
    }
  }, true);
}

// ----------------------------------------------------------------------------- annotators

class AutoSaver {
  constructor(annotationId, version) {
    this.url = "/api/annotations/" + encodeURIComponent(annotationId);
    this.version = version;
    // The editor's own serialization of what the server sent (it adds fields such as "origin"):
    // taken at the first look after loading, so that loading alone never counts as a change.
    this.saved = null;
    this.rejected = null; // the last content the server refused (not retried until it changes)
    this.running = null;
    this.again = false;
    this.conflict = false;
  }

  // What the editor shows right after loading is what the server holds; called once the editor
  // has loaded, so that an edit made before the first autosave is not taken for the starting point.
  baseline() {
    const result = currentResult();
    if (result === null) { setTimeout(() => this.baseline(), 50); return; } // its annotation is not in yet
    if (this.saved === null) this.saved = JSON.stringify(result);
  }

  pending() {
    const result = currentResult();
    if (result === null || this.conflict) return null;
    const text = JSON.stringify(result);
    if (this.saved === null) { this.saved = text; return null; }
    return text === this.saved || text === this.rejected ? null : { result, text };
  }

  flush() {
    if (this.running) { this.again = true; return this.running; }
    this.running = this.saveOnce().finally(() => {
      this.running = null;
      if (this.again) { this.again = false; return this.flush(); }
    });
    return this.running;
  }

  async saveOnce() {
    const change = this.pending();
    if (!change) return;
    setStatus("Saving…", "saving");
    try {
      const saved = await api("PUT", this.url, { version: this.version, result: change.result });
      this.version = saved.version;
      this.saved = change.text;
      this.rejected = null;
      setStatus("Saved (version " + saved.version + ")", "saved");
    } catch (failure) {
      this.handleFailure(failure, change.text);
    }
  }

  handleFailure(failure, text) {
    if (failure.status === 409) {
      this.conflict = true;
      const current = failure.data && failure.data.current_version;
      setStatus(notSaved(failure), "conflict");
      flash("This item was changed in another tab or window (now version " + current + "). " +
            "Your last change is NOT saved. Reload the page to continue from the current version.", true);
    } else {
      this.rejected = text;
      setStatus(notSaved(failure), "failed");
    }
  }

  // Submit; then back to the queue, or with `andNext` on to the next draft of the queue.
  async submit(andNext) {
    await this.flush();
    if (this.conflict) return;
    const result = currentResult();
    try {
      const done = await api("POST", this.url + "/submit", { version: this.version, result });
      this.version = done.version;
      this.saved = JSON.stringify(result);
      setStatus("Submitted", "saved");
      this.conflict = true; // nothing more to save from this page
    } catch (failure) {
      this.handleFailure(failure, JSON.stringify(result));
      return;
    }
    const next = andNext ? await nextDraft(root.dataset.target) : null;
    if (andNext && !next) setStatus("Submitted: that was your last draft", "saved");
    setTimeout(() => { window.location = next || "/annotate"; }, andNext ? 0 : 600);
  }
}

// The page of the annotator's next draft after this one, or null when none is left.
async function nextDraft(annotationId) {
  try {
    const following = await api("GET", "/api/tasks/next?after=" + encodeURIComponent(annotationId));
    return following.url;
  } catch (failure) {
    return null; // the submit went through: the queue page lists what is left
  }
}

async function startAnnotating(annotationId) {
  const data = await api("GET", "/api/annotations/" + encodeURIComponent(annotationId));
  showNote("item-note", data.note ? "Sent back by a reviewer: " + data.note : (data.ai_error ? "The AI pre-annotation failed: " + data.ai_error : ""));
  const saver = new AutoSaver(annotationId, data.version);
  window.workbenchSaver = saver;
  const editable = data.state === "draft";
  if (root.dataset.task === VIDEO_TASK) {
    timeline = startTimeline(data.task.data, data.result, { editable, onChange: () => setTimeout(() => saver.flush(), 50) });
    saver.baseline();
  } else {
    startTools(data, htmlOf(data.result), editable);
    const panelTools = root.dataset.task === OCR_TASK && editable
      ? () => startOcrTools(document.getElementById("ocr-tools"), currentResult, replaceResults)
      : root.dataset.task === SPATIAL_TASK && editable
        ? () => startSpatialTools(document.getElementById("spatial-tools"), annotationId, currentResult, replaceResults,
                                   regionIds(data.result || []).length) : null;
    startEditor(data.config, forLabelStudio(data.task), [{ id: "current", result: withoutHtml(data.result) }],
                ["panel", "controls", "side-column", "topbar"],
                {
                  submit: () => editable && saver.submit(false),
                  draft: () => saver.flush(),
                  loaded: () => { saver.baseline(); guardStrayBoxes(root); if (panelTools) setTimeout(panelTools, 0); },
                });
  }
  if (!editable) {
    saver.conflict = true;
    setStatus("This annotation is " + data.state + ": read only.", "");
    document.getElementById("submit-annotation").disabled = true;
    document.getElementById("submit-next").disabled = true;
    return;
  }
  setStatus("Version " + data.version, "");
  setInterval(() => saver.flush(), SAVE_EVERY_MS);
  for (const type of ["mouseup", "keyup", "change"]) {
    document.addEventListener(type, () => setTimeout(() => saver.flush(), 50), true);
  }
  window.addEventListener("beforeunload", (event) => {
    if (saver.pending()) { saver.flush(); event.preventDefault(); event.returnValue = ""; }
  });
  document.getElementById("submit-annotation").addEventListener("click", () => saver.submit(false));
  document.getElementById("submit-next").addEventListener("click", () => saver.submit(true));
}

// ----------------------------------------------------------------------------- reviewers

// Ask before an arbitration is settled: it cannot be taken back from this page.
function confirmResolution(text) {
  const dialog = document.getElementById("confirm-resolve");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((answer) => {
    dialog.addEventListener("close", () => answer(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function choiceText(data, choice) {
  if (choice === "ai") return "Make the AI's pre-annotation (" + (data.ai.author || "no model") + ") the final version?";
  const index = choice === "a" ? 0 : 1;
  const version = data.versions[index];
  return "Make version " + choice.toUpperCase() + " (" + (version ? version.author : "?") + ") the final version?";
}

async function resolve(itemId, body, question) {
  if (!(await confirmResolution(question))) { setStatus("Not saved: cancelled", ""); return; }
  try {
    await api("POST", "/api/review/items/" + encodeURIComponent(itemId) + "/resolve", body);
    setStatus("Final version saved", "saved");
    setTimeout(() => { window.location = "/review"; }, 600);
  } catch (failure) {
    setStatus(notSaved(failure), "failed");
  }
}

async function startReviewing(itemId, mode) {
  const data = await api("GET", "/api/review/items/" + encodeURIComponent(itemId));
  showNote("disagreement", data.disagreement ? "Disagreement: " + data.disagreement : "");
  const shown = mode === "inspect" && data.final ? [data.final] : data.versions;
  const annotations = shown.map((version) => ({ id: version.label, result: withoutHtml(version.result), createdBy: version.label.toUpperCase() + ": " + version.author }));
  const legend = shown.map((version) => version.label.toUpperCase() + " = " + version.author).join(", ");
  const legendBox = document.getElementById("version-legend");
  if (root.dataset.task === VIDEO_TASK) {
    if (legendBox) legendBox.textContent = legend + "; switch versions with the tabs above the video";
    showVersionTabs(data, shown, mode === "arbitrate");
  } else {
    if (legendBox) legendBox.textContent = legend + "; switch versions (and the AI's prediction) in the editor's menu";
    startTools(data, shown.length ? htmlOf(shown[0].result) : "", mode === "arbitrate");
    startEditor(data.config, forLabelStudio(data.task), annotations,
                ["panel", "controls", "side-column", "topbar", "annotations:tabs", "predictions:tabs", "annotations:menu"],
                { loaded: () => { guardStrayBoxes(root); if (codeEditor) followVersions(data, shown); } });
  }
  if (mode === "arbitrate") {
    showComparison(data);
    for (const button of document.querySelectorAll("button.accept")) {
      const choice = button.dataset.choice;
      button.addEventListener("click", () => resolve(itemId, { choice }, choiceText(data, choice)));
    }
    document.getElementById("save-merged").addEventListener("click", () => {
      resolve(itemId, { result: currentResult() }, "Save the version shown in the editor, with your edits, as the final version?");
    });
  } else {
    document.getElementById("reject").addEventListener("click", async () => {
      const reason = document.getElementById("reject-reason").value;
      try {
        await api("POST", "/api/review/items/" + encodeURIComponent(itemId) + "/reject", { reason });
        setStatus("Sent back", "saved");
      } catch (failure) {
        setStatus(failure.message, "failed");
      }
    });
  }
}

// ----------------------------------------------------------------------------- arbitration side by side

const SVG = "http://www.w3.org/2000/svg";

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A's, B's and the AI's boxes on three copies of the picture, each box numbered as the
// disagreement names it and coloured by whether it agrees with its counterpart.
function showComparison(data) {
  const section = document.getElementById("compare");
  const comparison = data.comparison;
  if (!section || !comparison) return;
  const [a, b] = data.versions;
  const sides = [
    { key: "a", title: "A: " + a.author, marks: comparison.a, other: "B" },
    { key: "b", title: "B: " + b.author, marks: comparison.b, other: "A" },
    { key: "ai", title: "AI: " + (data.ai.author || "no pre-annotation"), marks: comparison.ai, other: null },
  ];
  const panels = document.getElementById("compare-panels");
  const panel = comparison.kind === "events"
    ? (side) => eventPanel(side, data.task.data.timeline.duration)
    : (side) => comparePanel(side, comparison, data.task.data.image);
  panels.replaceChildren(...sides.map(panel));
  section.hidden = false;
}

function panelCaption(side, things) {
  const alone = side.marks.filter((mark) => mark.status === "alone").length;
  const differ = side.marks.filter((mark) => mark.status === "differs").length;
  const summary = side.other === null ? side.marks.length + " " + things + ", for reference"
    : side.marks.length + " " + things + ": " + alone + " without counterpart, " + differ + " different";
  const caption = element("figcaption");
  caption.append(element("strong", "compare-title", side.title), " ", element("span", "hint", summary));
  return caption;
}

function markList(side) {
  const list = element("ol", "compare-list");
  list.append(...side.marks.map((mark) => {
    const item = element("li", side.other === null ? "ai" : mark.status, markText(mark, side.other));
    item.dataset.number = mark.number;
    return item;
  }));
  return list;
}

// A video's version: its events as bars along the video's length, and the list.
function eventPanel(side, duration) {
  const figure = element("figure", "compare-panel " + side.key);
  figure.dataset.version = side.key;
  const length = duration || Math.max(1, ...side.marks.map((mark) => mark.end));
  const strip = element("div", "compare-strip");
  for (const mark of side.marks) {
    const bar = element("span", "event " + (side.other === null ? "ai" : mark.status), String(mark.number));
    bar.dataset.number = mark.number;
    bar.style.left = (100 * mark.start / length) + "%";
    bar.style.width = Math.max(0.5, 100 * (mark.end - mark.start) / length) + "%";
    bar.title = mark.where;
    strip.append(bar);
  }
  figure.append(panelCaption(side, "event(s)"), strip, markList(side));
  return figure;
}

function markText(mark, other) {
  if (other === null) return "#" + mark.number + " " + mark.where;
  if (mark.status === "alone") return "#" + mark.number + " " + mark.where + ": no counterpart in " + other;
  const pair = other + " #" + mark.partner;
  return "#" + mark.number + " " + mark.where + (mark.status === "agrees" ? ": agrees with " + pair : " vs " + pair + ": " + mark.issues.join("; "));
}

function comparePanel(side, comparison, image) {
  const figure = element("figure", "compare-panel " + side.key);
  figure.dataset.version = side.key;
  const frame = element("div", "compare-frame");
  const picture = element("img");
  picture.src = image;
  picture.alt = side.title;
  const overlay = document.createElementNS(SVG, "svg");
  overlay.setAttribute("viewBox", "0 0 " + comparison.width + " " + comparison.height);
  overlay.setAttribute("preserveAspectRatio", "none");
  const size = Math.max(10, comparison.height / 22);
  for (const mark of side.marks) {
    const [x1, y1, x2, y2] = mark.bbox;
    const box = document.createElementNS(SVG, "rect");
    box.setAttribute("x", x1); box.setAttribute("y", y1);
    box.setAttribute("width", x2 - x1); box.setAttribute("height", y2 - y1);
    box.setAttribute("class", "box " + (side.other === null ? "ai" : mark.status));
    box.dataset.number = mark.number;
    const number = document.createElementNS(SVG, "text");
    number.setAttribute("x", x1 + 2); number.setAttribute("y", y1 + size);
    number.setAttribute("font-size", size);
    number.textContent = String(mark.number);
    overlay.append(box, number);
  }
  frame.append(picture, overlay);
  figure.append(panelCaption(side, "box(es)"), frame, markList(side));
  return figure;
}

// The code editor shows the HTML of the version selected in Label Studio's tabs.
function followVersions(data, shown) {
  const html = Object.fromEntries(shown.map((version) => [version.label, htmlOf(version.result)]));
  const prediction = data.task.predictions && data.task.predictions[0];
  let current = null;
  setInterval(() => {
    const annotation = selectedAnnotation();
    if (!annotation) return;
    const key = annotation.type === "prediction" ? "ai" : String(annotation.pk || annotation.id);
    if (key === current) return;
    current = key;
    codeEditor.load(key === "ai" ? htmlOf(prediction ? prediction.result : []) : (html[key] || ""));
  }, 400);
}

// A video's versions side by side is two timelines' worth of events: tabs load one at a time into
// the timeline editor; an arbitrating reviewer may edit the one shown and save it as final.
function showVersionTabs(data, shown, editable) {
  const versions = shown.map((version) => ({ label: version.label.toUpperCase() + ": " + version.author, result: version.result }));
  const prediction = data.task.predictions && data.task.predictions[0];
  if (prediction) versions.push({ label: "AI", result: prediction.result });
  timeline = startTimeline(data.task.data, versions.length ? versions[0].result : [], { editable });
  const tabs = document.getElementById("versions");
  tabs.replaceChildren(...versions.map((version, index) => {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.textContent = version.label;
    tab.className = index === 0 ? "tab selected" : "tab";
    tab.addEventListener("click", () => {
      for (const other of tabs.children) other.className = "tab";
      tab.className = "tab selected";
      timeline.load(version.result);
    });
    return tab;
  }));
  tabs.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const mode = root.dataset.mode;
  const started = mode === "annotate" ? startAnnotating(root.dataset.target) : startReviewing(root.dataset.target, mode);
  started.catch((failure) => flash(failure.message, true));
});
