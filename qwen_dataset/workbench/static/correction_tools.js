// Correction steps the Label Studio editor lacks, working on its results (the JSON it saves):
//
// * OCR text lines: merge lines that belong together (their boxes' union, texts joined in reading
//   order) or split a line at a character (its box cut where the text is cut, by the share of
//   characters). The editor is then given the new results (replaceResults in editor.js).
// * Generated HTML: the page's code in a code editor beside the screenshot and its rendering. The
//   code editor owns the HTML; the Label Studio config of the workbench leaves its text box out,
//   and the HTML result is put back into what is saved (withHtml).
//
// The functions on results are pure, so Node runs them in the unit tests as the browser does.
"use strict";

const HTML_CONTROL = "html";

function regionIds(results) {
  const ids = [];
  for (const result of results) {
    if (result.id && result.type !== "relation" && result.value && "x" in result.value && !ids.includes(result.id)) ids.push(result.id);
  }
  return ids;
}

function transcriptionOf(results, id) {
  const found = results.find((result) => result.id === id && result.from_name === "transcription");
  return found ? (found.value.text || []).join("\n") : "";
}

// The OCR lines in reading order: [{id, text, x, y, width, height}] (percent of the frame).
function ocrLines(results) {
  return regionIds(results).map((id) => {
    const shape = results.find((result) => result.id === id && result.type === "rectanglelabels") || results.find((result) => result.id === id);
    const { x, y, width, height } = shape.value;
    return { id, text: transcriptionOf(results, id), x, y, width, height };
  });
}

function withGeometry(value, box) {
  return { ...value, x: box.x, y: box.y, width: box.width, height: box.height };
}

// One line where there were several: the first line's id and place, the union of the boxes, the
// texts joined with a space in reading order. Fewer than two known ids change nothing.
function mergeLines(results, ids) {
  const lines = ocrLines(results).filter((line) => ids.includes(line.id));
  if (lines.length < 2) return results;
  const left = Math.min(...lines.map((line) => line.x));
  const top = Math.min(...lines.map((line) => line.y));
  const right = Math.max(...lines.map((line) => line.x + line.width));
  const bottom = Math.max(...lines.map((line) => line.y + line.height));
  const box = { x: left, y: top, width: right - left, height: bottom - top };
  const keep = lines[0].id;
  const gone = new Set(lines.slice(1).map((line) => line.id));
  const text = lines.map((line) => line.text.trim()).filter(Boolean).join(" ");
  return results
    .filter((result) => !gone.has(result.id))
    .map((result) => {
      if (result.id !== keep) return result;
      const value = withGeometry(result.value, box);
      if (result.from_name === "transcription") value.text = [text];
      return { ...result, value };
    });
}

// Two lines where there was one, cut before character `at` of its text: the box is cut at the
// same share of its width. The new line's results follow the old one's (reading order).
function splitLine(results, id, at, newId) {
  const line = ocrLines(results).find((candidate) => candidate.id === id);
  if (!line || !(at > 0 && at < line.text.length)) return results;
  const share = at / line.text.length;
  const first = { x: line.x, y: line.y, width: line.width * share, height: line.height };
  const second = { x: line.x + line.width * share, y: line.y, width: line.width * (1 - share), height: line.height };
  const texts = [line.text.slice(0, at).trimEnd(), line.text.slice(at).trimStart()];
  const out = [];
  const copies = [];
  for (const result of results) {
    if (result.id !== id) { out.push(result); continue; }
    const part = (box, text) => {
      const value = withGeometry(result.value, box);
      if (result.from_name === "transcription") value.text = [text];
      return value;
    };
    out.push({ ...result, value: part(first, texts[0]) });
    copies.push({ ...result, id: newId, value: part(second, texts[1]) });
  }
  const last = out.map((result) => result.id).lastIndexOf(id);
  out.splice(last + 1, 0, ...copies);
  return out;
}

function htmlOf(results) {
  const found = (results || []).find((result) => result.from_name === HTML_CONTROL);
  return found ? (found.value.text || []).join("\n") : "";
}

function withoutHtml(results) {
  return (results || []).filter((result) => result.from_name !== HTML_CONTROL);
}

function withHtml(results, html) {
  return [
    ...withoutHtml(results),
    { id: HTML_CONTROL, from_name: HTML_CONTROL, to_name: "image", type: "textarea", value: { text: [html] } },
  ];
}

// ----------------------------------------------------------------------------- the panels (browser only)

// The OCR lines panel: tick lines to merge, or put the cursor in a line's text and split it there.
function startOcrTools(panel, getResults, setResults) {
  const list = panel.querySelector("#ocr-lines");
  let counter = 0;
  function render() {
    const results = getResults();
    if (!results) return;
    const rows = ocrLines(results).map((line, index) => {
      const row = document.createElement("li");
      row.dataset.id = line.id;
      const tick = document.createElement("input");
      tick.type = "checkbox";
      tick.className = "ocr-line-pick";
      const text = document.createElement("input");
      text.className = "ocr-line-text";
      text.value = line.text;
      text.readOnly = true; // the text is edited in the editor; here the cursor only marks where to split
      const split = document.createElement("button");
      split.type = "button";
      split.className = "ocr-line-split";
      split.textContent = "Split at cursor";
      split.addEventListener("click", () => {
        counter += 1;
        setResults(splitLine(getResults(), line.id, text.selectionStart, line.id + "-split-" + Date.now().toString(36) + counter));
        render();
      });
      const number = document.createElement("span");
      number.textContent = String(index + 1);
      row.append(tick, number, text, split);
      return row;
    });
    list.replaceChildren(...rows);
  }
  panel.querySelector("#ocr-merge").addEventListener("click", () => {
    const ids = [...list.querySelectorAll(".ocr-line-pick:checked")].map((tick) => tick.closest("li").dataset.id);
    if (ids.length < 2) { flash("Tick two or more lines to merge them.", true); return; }
    setResults(mergeLines(getResults(), ids));
    render();
  });
  panel.querySelector("#ocr-refresh").addEventListener("click", render);
  panel.hidden = false;
  render();
  return { render };
}

// The spatial panel: relations proposed by the server from the boxes (POST .../spatial-relations),
// on demand or whenever a box is added while "Suggest as I draw boxes" is ticked.
// `opened` is how many boxes the item was opened with (what the server sent), so loading is never
// taken for drawing.
function startSpatialTools(panel, annotationId, getResults, setResults, opened) {
  const url = "/api/annotations/" + encodeURIComponent(annotationId) + "/spatial-relations";
  const auto = panel.querySelector("#spatial-auto");
  let boxes = opened; // the boxes counted at the last look
  async function suggest() {
    const results = getResults();
    if (!results) return;
    try {
      const answer = await api("POST", url, { result: results });
      setResults(answer.result);
      boxes = regionIds(answer.result).length;
    } catch (failure) {
      flash("No relations suggested: " + failure.message, true);
    }
  }
  panel.querySelector("#spatial-suggest").addEventListener("click", suggest);
  setInterval(() => {
    const results = getResults();
    if (!results) return;
    const now = regionIds(results).length;
    const drawn = now > boxes;
    boxes = now;
    if (drawn && auto.checked) suggest();
  }, 700);
  panel.hidden = false;
  return { suggest };
}

// The code editor: the HTML in a text box, its rendering in a sandboxed frame (no scripts, no
// network: the page's Content-Security-Policy applies to it) next to the screenshot.
function startCodeEditor(panel, imageUrl, width, height, html, onInput) {
  const source = panel.querySelector("#html-source");
  const frame = panel.querySelector("#html-preview");
  const box = panel.querySelector(".preview-box");
  panel.querySelector("#html-screenshot").src = imageUrl;
  // The page lays out at the screenshot's own size, then is scaled down to the column.
  frame.width = width;
  frame.height = height;
  function fit() {
    const scale = box.clientWidth / width;
    frame.style.transform = "scale(" + scale + ")";
    box.style.height = height * scale + "px";
  }
  window.addEventListener("resize", fit);
  let timer = null;
  function show() { fit(); frame.srcdoc = source.value; }
  source.value = html;
  source.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(show, 250);
    onInput();
  });
  panel.hidden = false;
  show();
  return {
    value: () => source.value,
    load: (text) => { source.value = text; show(); },
    setEditable: (editable) => { source.readOnly = !editable; },
  };
}
