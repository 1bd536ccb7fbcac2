// genrt playground: poems stream in over Server-Sent Events (read with fetch), faces come back as one PNG grid.
"use strict";

const $ = (id) => document.getElementById(id);
const BREAKS = "。？！；";

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function errorOf(response) {
  if (response.status === 401) $("key-field").hidden = false;
  try { return (await response.json()).error.message; } catch (e) { return response.status + " " + response.statusText; }
}

function setStatus(id, text, isError) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(isError));
}

// ---------------------------------------------------------------- tabs

for (const tab of document.querySelectorAll("nav button")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav button")) {
      other.setAttribute("aria-selected", String(other === tab));
      $(other.dataset.panel).hidden = other !== tab;
    }
  });
}

// ---------------------------------------------------------------- poems

function poemRequest() {
  const body = { prompt: $("prompt").value.trim(), mode: $("mode").value, stream: true };
  if ($("form").value) body.form = $("form").value;
  if ($("tonal").checked) body.tonal = true;
  if ($("rhyme").value) body.rhyme = $("rhyme").value;
  if ($("acrostic").value.trim()) body.acrostic = $("acrostic").value.trim();
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

class PoemView {
  constructor(title) {
    this.root = $("poem");
    this.root.replaceChildren();
    delete this.root.dataset.done;                     // a new poem is not done until its done event
    const h = document.createElement("h2");
    h.textContent = "《" + title + "》";
    this.root.append(h);
    this.newLine();
  }
  newLine() { this.line = document.createElement("div"); this.line.className = "line"; this.root.append(this.line); }
  add(text, tones) {
    // by code point: a character beyond the Basic Multilingual Plane is one cell with its own mark
    const chars = Array.from(text), marks = Array.from(tones);
    for (let i = 0; i < chars.length; i++) {
      const cell = document.createElement("span");
      cell.className = "char";
      const ch = document.createElement("span");
      ch.textContent = chars[i];
      const tone = document.createElement("span");
      const mark = marks[i] !== undefined && marks[i] !== chars[i] ? marks[i] : "";
      tone.className = "tone " + mark;
      tone.textContent = mark || "\u00a0";
      cell.append(ch, tone);
      this.line.append(cell);
      if (BREAKS.includes(chars[i])) this.newLine();
    }
  }
  text() { return Array.from(this.root.querySelectorAll(".char > span:first-child")).map((s) => s.textContent).join(""); }
}

// Server-Sent Events from a fetch body: "event: NAME\ndata: JSON\n\n" blocks.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      yield { name, data: JSON.parse(data) };
    }
  }
}

$("poem-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = poemRequest();
  if (!body.prompt && body.acrostic) body.prompt = body.acrostic;
  $("write").disabled = true;
  setStatus("poem-status", "writing…");
  const view = new PoemView(body.mode === "continue" ? "续" : body.prompt);
  try {
    const response = await fetch("/v1/poems", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) { setStatus("poem-status", await errorOf(response), true); return; }
    let ended = false;
    for await (const ev of events(response)) {
      if (ev.name === "piece") view.add(ev.data.text, ev.data.tones);
      else if (ev.name === "error") { setStatus("poem-status", ev.data.error.message, true); return; }
      else if (ev.name === "done") {
        ended = true;
        const p = ev.data.poem;
        const seed = ev.data.seed === null ? "" : ", seed " + ev.data.seed;
        setStatus("poem-status", "log-probability " + p.score.toFixed(2) + seed + (p.finished ? "" : " (cut at the length limit)"));
        $("poem").dataset.done = "true";
      }
    }
    if (!ended) setStatus("poem-status", "the stream ended before the poem was done", true);
  } catch (err) {
    setStatus("poem-status", String(err), true);
  } finally {
    $("write").disabled = false;
  }
});

// ---------------------------------------------------------------- faces

$("truncation").addEventListener("input", () => { $("truncation-value").textContent = $("truncation").value; });

$("faces-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("draw").disabled = true;
  setStatus("faces-status", "drawing…");
  const body = { n: Number($("face-count").value), truncation: Number($("truncation").value), format: "png" };
  if ($("face-seed").value !== "") body.seed = Number($("face-seed").value);
  if ($("face-filter").checked) body.filter = 0.5;
  try {
    const response = await fetch("/v1/faces", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) { setStatus("faces-status", await errorOf(response), true); return; }
    const old = $("grid").src;
    $("grid").src = URL.createObjectURL(await response.blob());
    if (old) URL.revokeObjectURL(old);
    $("grid").hidden = false;
    setStatus("faces-status", body.n + " faces, seed " + response.headers.get("X-Genrt-Seed") + ", ψ " + body.truncation +
              (body.filter ? ", best half" : ""));
  } catch (err) {
    setStatus("faces-status", String(err), true);
  } finally {
    $("draw").disabled = false;
  }
});
