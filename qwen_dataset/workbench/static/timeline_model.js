// The video-event editor's model: a video's events (start, end, description) and the operations
// the keyboard and the timeline perform on them. No DOM here, so Node runs it in the unit tests
// (tests/test_workbench_units.py) exactly as the browser does.
//
// Times snap to the anchors - 0, the video's end, its shot cuts and audio change points - when
// one lies within `snapSeconds`; `exact` skips the snap. Events are kept in time order; ids are
// the model's own ("e1", "e2", ...), never sent to the server: what it stores is `result()`.
"use strict";

const SNAP_SECONDS = 0.2;
const NEW_EVENT_SECONDS = 1.0;

function roundTime(t) {
  return Math.round(t * 1000) / 1000;
}

class EventList {
  constructor(events, options) {
    const settings = options || {};
    this.duration = typeof settings.duration === "number" && settings.duration > 0 ? settings.duration : null;
    this.snapSeconds = typeof settings.snapSeconds === "number" ? settings.snapSeconds : SNAP_SECONDS;
    const anchors = [0, ...(settings.anchors || [])];
    if (this.duration !== null) anchors.push(this.duration);
    this.anchors = [...new Set(anchors.map(Number).filter(Number.isFinite))].sort((a, b) => a - b);
    this.nextNumber = 1;
    this.load(events || []);
  }

  // The video's length once the player knows it (when the frames manifest did not).
  setDuration(duration) {
    if (this.duration !== null || !(duration > 0)) return;
    this.duration = duration;
    this.anchors = [...new Set([...this.anchors, duration])].sort((a, b) => a - b);
  }

  load(events) {
    this.events = events.map((event) => ({
      id: this.newId(),
      start: Number(event.start),
      end: Number(event.end),
      description: String(event.description || ""),
    }));
    this.sort();
  }

  newId() {
    return "e" + this.nextNumber++;
  }

  sort() {
    this.events.sort((a, b) => a.start - b.start || a.end - b.end);
  }

  get(id) {
    return this.events.find((event) => event.id === id) || null;
  }

  clamp(t) {
    const upper = this.duration === null ? Infinity : this.duration;
    return Math.min(Math.max(Number(t), 0), upper);
  }

  // The anchor nearest to t when one lies within snapSeconds, else t (clamped to the video).
  snap(t, exact) {
    const time = this.clamp(t);
    if (exact) return roundTime(time);
    let best = null;
    for (const anchor of this.anchors) {
      if (Math.abs(anchor - time) <= this.snapSeconds && (best === null || Math.abs(anchor - time) < Math.abs(best - time))) {
        best = anchor;
      }
    }
    return roundTime(best === null ? time : best);
  }

  // A new event from t, NEW_EVENT_SECONDS long (or up to the video's end); returns its id.
  add(t, exact) {
    let start = this.snap(t, exact);
    let end = this.snap(start + NEW_EVENT_SECONDS, exact);
    if (end <= start) {
      end = start;
      start = this.snap(Math.max(0, end - NEW_EVENT_SECONDS), exact);
    }
    if (end <= start) return null;
    const event = { id: this.newId(), start, end, description: "" };
    this.events.push(event);
    this.sort();
    return event.id;
  }

  setStart(id, t, exact) {
    const event = this.get(id);
    const start = this.snap(t, exact);
    if (!event || start >= event.end) return false;
    event.start = start;
    this.sort();
    return true;
  }

  setEnd(id, t, exact) {
    const event = this.get(id);
    const end = this.snap(t, exact);
    if (!event || end <= event.start) return false;
    event.end = end;
    this.sort();
    return true;
  }

  // Both ends at once (a drag on the timeline); snapped, and refused if they would cross.
  move(id, start, end, exact) {
    const event = this.get(id);
    const [from, to] = [this.snap(start, exact), this.snap(end, exact)];
    if (!event || to <= from) return false;
    event.start = from;
    event.end = to;
    this.sort();
    return true;
  }

  // Two events where there was one: the first ends at t, the second starts there; returns the second's id.
  split(id, t, exact) {
    const event = this.get(id);
    const at = this.snap(t, exact);
    if (!event || !(event.start < at && at < event.end)) return null;
    const second = { id: this.newId(), start: at, end: event.end, description: event.description };
    event.end = at;
    this.events.push(second);
    this.sort();
    return second.id;
  }

  // The event and the one after it become one, spanning both, their descriptions joined.
  mergeWithNext(id) {
    const index = this.events.findIndex((event) => event.id === id);
    if (index < 0 || index + 1 >= this.events.length) return false;
    const event = this.events[index];
    const next = this.events[index + 1];
    event.end = Math.max(event.end, next.end);
    const texts = [event.description.trim(), next.description.trim()].filter((text, i, all) => text && all.indexOf(text) === i);
    event.description = texts.join("; ");
    this.events.splice(index + 1, 1);
    return true;
  }

  remove(id) {
    const before = this.events.length;
    this.events = this.events.filter((event) => event.id !== id);
    return this.events.length < before;
  }

  setDescription(id, text) {
    const event = this.get(id);
    if (event) event.description = String(text);
    return Boolean(event);
  }

  // The neighbouring event of id in time order (+1 next, -1 previous), or null.
  neighbour(id, step) {
    const index = this.events.findIndex((event) => event.id === id);
    const other = this.events[index + step];
    return index >= 0 && other ? other.id : null;
  }

  // The anchor strictly before (-1) or after (+1) t, for jumping between cuts.
  anchorFrom(t, step) {
    const candidates = step > 0 ? this.anchors.filter((a) => a > t + 1e-3) : this.anchors.filter((a) => a < t - 1e-3);
    if (!candidates.length) return null;
    return step > 0 ? candidates[0] : candidates[candidates.length - 1];
  }

  // What the server stores: the events in time order, times in seconds (to the millisecond).
  result() {
    return this.events.map((event) => ({
      start: roundTime(event.start),
      end: roundTime(event.end),
      description: event.description,
    }));
  }
}
