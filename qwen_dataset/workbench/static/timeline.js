// The video-event editor's view: the video playing in the page, a wavesurfer.js timeline (npm,
// served from node_modules like the Label Studio editor) showing the events as regions and the
// shot cuts and audio changes as marks, the list of events with their descriptions, and the
// keyboard. The events themselves live in an EventList (timeline_model.js); every change calls
// onChange, which the annotator's page answers with an autosave (static/editor.js).
"use strict";

const FRAME_SECONDS = 0.04; // one frame at 25 fps: the arrow keys' step
const COLOURS = {
  cut: "rgba(211, 47, 47, 0.95)",
  audio: "rgba(245, 124, 0, 0.95)",
  event: "rgba(21, 101, 192, 0.20)",
  selected: "rgba(21, 101, 192, 0.45)",
};
const EDITING_KEYS = new Set(["n", "i", "o", "s", "m", "Delete", "Backspace"]);

function formatSeconds(t) {
  return (Number(t) || 0).toFixed(3);
}

class Timeline {
  constructor(data, events, options) {
    const settings = options || {};
    const timeline = data.timeline || {};
    this.editable = Boolean(settings.editable);
    this.onChange = settings.onChange || (() => {});
    this.root = document.getElementById("timeline-editor");
    this.root.dataset.editable = String(this.editable);
    this.video = document.getElementById("timeline-video");
    this.video.src = data.video;
    this.cuts = (timeline.cuts || []).map(Number);
    this.audioChanges = (timeline.audio_changes || []).map(Number);
    this.list = new EventList(events, { duration: timeline.duration, anchors: [...this.cuts, ...this.audioChanges] });
    this.selected = this.list.events.length ? this.list.events[0].id : null;
    this.snapBox = document.getElementById("timeline-snap");
    this.pendingSeek = null; // a seek asked for before the video's metadata arrived
    this.video.addEventListener("loadedmetadata", () => {
      if (this.pendingSeek !== null) this.seek(this.pendingSeek);
    });
    this.regions = WaveSurfer.Regions.create();
    this.ready = false;
    // Flat peaks: nothing is fetched or decoded for a waveform; the ruler and the regions are the point.
    this.ws = WaveSurfer.create({
      container: "#timeline-wave",
      media: this.video,
      peaks: [[0, 0]],
      duration: timeline.duration || undefined,
      height: 64,
      waveColor: "#cfd8dc",
      progressColor: "#90a4ae",
      cursorColor: "#263238",
      cursorWidth: 2,
      plugins: [this.regions, WaveSurfer.Timeline.create()],
    });
    this.ws.on("ready", () => {
      this.list.setDuration(this.ws.getDuration());
      document.getElementById("timeline-duration").textContent = "of " + formatSeconds(this.ws.getDuration()) + " s";
      this.ready = true;
      this.render();
    });
    this.ws.on("timeupdate", (t) => { document.getElementById("timeline-time").textContent = formatSeconds(t) + " s"; });
    this.regions.on("region-updated", (region) => this.onRegionMoved(region));
    this.regions.on("region-clicked", (region, event) => {
      if (!region.id.startsWith("event-")) return;
      event.stopPropagation();
      this.select(region.id.slice("event-".length));
    });
    document.addEventListener("keydown", (event) => this.onKey(event));
    for (const button of this.root.querySelectorAll(".timeline-tools button")) {
      button.disabled = !this.editable;
      button.addEventListener("click", (event) => this.command(button.dataset.key, this.exact(event)));
    }
    this.renderList();
  }

  // Place a time exactly (no snapping): Shift held, or snapping switched off.
  exact(event) {
    return Boolean(event && event.shiftKey) || !this.snapBox.checked;
  }

  now() {
    return this.pendingSeek !== null ? this.pendingSeek : this.video.currentTime;
  }

  // Seek the video element itself. It takes a seek asked for while another is running (the last
  // one wins) and reports the new position at once; wavesurfer's setTime instead parks a seek
  // asked for while the video cannot play yet, which is the case during a seek, and drops it when
  // the earlier seek's "seeking" event arrives: a key pressed right after a click (k after
  // selecting an event) was lost whenever the first seek had not finished.
  seek(t) {
    const time = this.list.clamp(t);
    if (this.video.readyState < HTMLMediaElement.HAVE_METADATA) {
      this.pendingSeek = time;
    } else {
      this.pendingSeek = null;
      this.video.currentTime = time;
    }
    document.getElementById("timeline-time").textContent = formatSeconds(time) + " s";
  }

  command(key, exact) {
    if (!this.editable) return;
    const id = this.selected;
    const t = this.now();
    let changed = false;
    if (key === "n") {
      const added = this.list.add(t, exact);
      if (added) { this.selected = added; changed = true; }
    } else if (id === null) {
      return;
    } else if (key === "i") {
      changed = this.list.setStart(id, t, exact);
    } else if (key === "o") {
      changed = this.list.setEnd(id, t, exact);
    } else if (key === "s") {
      const second = this.list.split(id, t, exact);
      if (second) { this.selected = second; changed = true; }
    } else if (key === "m") {
      changed = this.list.mergeWithNext(id);
    } else if (key === "Delete" || key === "Backspace") {
      const next = this.list.neighbour(id, 1) || this.list.neighbour(id, -1);
      changed = this.list.remove(id);
      this.selected = next;
    }
    if (changed) this.changed();
  }

  onKey(event) {
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === " ") {
      event.preventDefault();
      this.ws.playPause();
    } else if (key === "ArrowLeft" || key === "ArrowRight") {
      event.preventDefault();
      const step = (event.shiftKey ? 1 : FRAME_SECONDS) * (key === "ArrowLeft" ? -1 : 1);
      this.seek(this.now() + step);
    } else if (key === "j" || key === "k") {
      const anchor = this.list.anchorFrom(this.now(), key === "k" ? 1 : -1);
      if (anchor !== null) this.seek(anchor);
    } else if (key === "[" || key === "]") {
      const other = this.selected === null ? null : this.list.neighbour(this.selected, key === "]" ? 1 : -1);
      if (other) this.select(other, true);
    } else if (EDITING_KEYS.has(key)) {
      event.preventDefault();
      this.command(key, this.exact(event));
    }
  }

  onRegionMoved(region) {
    if (!this.editable || !region.id.startsWith("event-")) return;
    const id = region.id.slice("event-".length);
    this.list.move(id, region.start, region.end, !this.snapBox.checked);
    this.selected = id;
    // Redraw after wavesurfer has finished with the drag that moved the region.
    setTimeout(() => this.changed(), 0);
  }

  select(id, seek) {
    this.selected = id;
    const event = this.list.get(id);
    if (seek && event) this.seek(event.start);
    this.render();
  }

  changed() {
    this.render();
    this.onChange();
  }

  render() {
    if (this.ready) this.renderRegions();
    this.renderList();
  }

  renderRegions() {
    this.regions.clearRegions();
    const marks = [["cut", this.cuts], ["audio", this.audioChanges]];
    for (const [kind, times] of marks) {
      times.forEach((t, index) => {
        this.regions.addRegion({ id: kind + "-" + index, start: t, color: COLOURS[kind], drag: false, resize: false });
      });
    }
    this.list.events.forEach((event, index) => {
      this.regions.addRegion({
        id: "event-" + event.id,
        start: event.start,
        end: event.end,
        content: String(index + 1),
        color: event.id === this.selected ? COLOURS.selected : COLOURS.event,
        drag: this.editable,
        resize: this.editable,
      });
    });
  }

  renderList() {
    const body = document.querySelector("#event-list tbody");
    const rows = this.list.events.map((event, index) => {
      const row = document.createElement("tr");
      row.dataset.id = event.id;
      row.className = event.id === this.selected ? "selected" : "";
      const cells = [String(index + 1), formatSeconds(event.start), formatSeconds(event.end)].map((text) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        return cell;
      });
      const describe = document.createElement("td");
      const input = document.createElement("input");
      input.className = "event-description";
      input.value = event.description;
      input.placeholder = "One sentence: what happens";
      input.disabled = !this.editable;
      input.addEventListener("focus", () => { this.selected = event.id; this.markSelectedRow(); });
      input.addEventListener("input", () => { this.list.setDescription(event.id, input.value); this.onChange(); });
      describe.append(input);
      row.append(...cells, describe);
      row.addEventListener("click", (click) => { if (click.target !== input) this.select(event.id, true); });
      return row;
    });
    body.replaceChildren(...rows);
  }

  markSelectedRow() {
    for (const row of document.querySelectorAll("#event-list tbody tr")) {
      row.className = row.dataset.id === this.selected ? "selected" : "";
    }
  }

  // Show another version (a reviewer's tabs); not a change to save.
  load(events) {
    this.list.load(events);
    this.selected = this.list.events.length ? this.list.events[0].id : null;
    this.render();
  }

  setEditable(editable) {
    this.editable = Boolean(editable);
    this.root.dataset.editable = String(this.editable);
    for (const button of this.root.querySelectorAll(".timeline-tools button")) button.disabled = !this.editable;
    this.render();
  }

  result() {
    return this.list.result();
  }
}

function startTimeline(data, events, options) {
  if (typeof WaveSurfer === "undefined" || !WaveSurfer.Regions) {
    throw new Error("The timeline editor (wavesurfer.js) is not installed on the server.");
  }
  const timeline = new Timeline(data, events, options);
  window.workbenchTimeline = timeline;
  return timeline;
}
