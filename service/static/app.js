/* btxcode coder page: plain JS, no dependencies. Note text stays in this page and the /v1 request. */
"use strict";
(function () {
  const MAX_BYTES = 200000;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) n.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) n.append(kid);
    return n;
  };
  const state = { result: null, text: "", decisions: [], edits: [] };

  async function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    opts.headers = Object.assign({ "X-BTX-Client": "web" }, opts.headers);
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    const resp = await fetch(path, opts);
    let body = null;
    const ctype = resp.headers.get("content-type") || "";
    if (ctype.includes("json")) body = await resp.json();
    if (!resp.ok) {
      const err = new Error((body && body.error && body.error.message) || resp.statusText || "request failed");
      err.status = resp.status;
      err.code = body && body.error && body.error.code;
      throw err;
    }
    return body;
  }

  function setStatus(msg, isError) {
    const s = $("status");
    s.textContent = msg || "";
    s.className = isError ? "error" : "";
  }

  // ---- login ---------------------------------------------------------------------------------
  async function start() {
    try {
      const me = await api("/v1/me");
      $("login").hidden = true;
      $("app").hidden = false;
      $("logout").hidden = false;
      $("who").textContent = "Signed in as " + me.name;
      loadHealth();
      $("note").focus();
    } catch (e) {
      $("app").hidden = true;
      $("login").hidden = false;
      $("api-key").focus();
    }
  }

  async function loadHealth() {
    try {
      const h = await api("/v1/health");
      const sel = $("payer");
      sel.textContent = "";
      for (const p of h.payers) sel.append(el("option", { value: p, text: p }));
      sel.value = h.payers.includes("medicare") ? "medicare" : h.payers[0];
      const v = h.versions;
      $("versions").textContent = `engine ${v.engine} · tables ${v.tables} · model ${v.model} · schema ${v.schema}`;
    } catch (e) { /* the page works without it */ }
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      const resp = await fetch("/login", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ api_key: $("api-key").value.trim() }) });
      if (!resp.ok) throw new Error("That key was not accepted.");
      $("api-key").value = "";
      start();
    } catch (e) { $("login-error").textContent = e.message; }
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", credentials: "same-origin" });
    location.reload();
  });

  // ---- note input: paste, drop or open a .txt ------------------------------------------------
  async function readFile(file) {
    if (!file) return;
    if (file.size > MAX_BYTES) { setStatus(`${file.name} is ${file.size} bytes; the limit is ${MAX_BYTES}.`, true); return; }
    const buf = await file.arrayBuffer();
    let text;
    try { text = new TextDecoder("utf-8", { fatal: true }).decode(buf); }
    catch (e) { setStatus(`${file.name} is not UTF-8 text.`, true); return; }
    if (text.includes("\u0000")) { setStatus(`${file.name} looks binary, not a text note.`, true); return; }
    showEditor();
    $("note").value = text;
    setStatus(`Loaded ${file.name}.`);
  }
  const note = $("note");
  note.addEventListener("dragover", (ev) => { ev.preventDefault(); note.classList.add("dragging"); });
  note.addEventListener("dragleave", () => note.classList.remove("dragging"));
  note.addEventListener("drop", (ev) => {
    ev.preventDefault();
    note.classList.remove("dragging");
    if (ev.dataTransfer && ev.dataTransfer.files.length) readFile(ev.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (ev) => { readFile(ev.target.files[0]); ev.target.value = ""; });
  note.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); suggest(); }
  });
  $("note-form").addEventListener("submit", (ev) => { ev.preventDefault(); suggest(); });
  $("edit-note").addEventListener("click", () => { showEditor(); note.focus(); });

  function showEditor() {
    $("note-view").hidden = true;
    $("edit-note").hidden = true;
    note.hidden = false;
  }

  // ---- suggest -------------------------------------------------------------------------------
  async function suggest() {
    const text = note.value.replace(/\r\n?/g, "\n");
    if (!text.trim()) { setStatus("Paste or drop a note first.", true); note.focus(); return; }
    if (new TextEncoder().encode(text).length > MAX_BYTES) { setStatus("The note is over 200 kB.", true); return; }
    const body = { text };
    if ($("dos").value) body.date_of_service = $("dos").value;
    if ($("payer").value) body.payer = $("payer").value;
    $("suggest-btn").disabled = true;
    setStatus("Coding…");
    try {
      const result = await api("/v1/suggest", { json: body });
      state.result = result;
      state.text = text;
      state.decisions = result.lines.map(() => null);
      state.edits = result.lines.map((ln) => ({ code: ln.code, units: ln.units, modifiers: ln.modifiers.join(",") }));
      render();
      const n = result.lines.length;
      setStatus(n ? `${n} line${n === 1 ? "" : "s"} suggested for ${result.date_of_service} (${result.code_set.diagnoses}).`
                  : "No billable toxin procedure found.");
    } catch (e) {
      setStatus(e.message + (e.code ? ` (${e.code})` : ""), true);
      if (e.status === 401) start();
    } finally {
      $("suggest-btn").disabled = false;
    }
  }

  // ---- rendering -----------------------------------------------------------------------------
  function render() {
    const r = state.result;
    renderNote(r);
    const wl = $("warnings");
    wl.textContent = "";
    for (const w of r.warnings) {
      wl.append(el("li", { class: w.severity || "warning" }, el("span", { class: "wcode", text: w.code }), w.message));
    }
    const tbody = $("lines").querySelector("tbody");
    tbody.textContent = "";
    r.lines.forEach((ln, i) => tbody.append(lineRow(ln, i)));
    $("lines").hidden = r.lines.length === 0;
    $("submit-row").hidden = r.lines.length === 0;
    $("submit-status").textContent = "";
    const dx = $("diagnoses");
    dx.textContent = "";
    if (r.diagnoses.length) {
      const ul = el("ul");
      r.diagnoses.forEach((d, j) => {
        const li = el("li", { tabindex: "0", "data-dx": String(j) },
          el("span", { class: "code", text: d.code }), ` ${d.description || ""} (${d.system})`);
        li.addEventListener("mouseenter", () => activate("d" + j));
        li.addEventListener("focus", () => activate("d" + j));
        li.addEventListener("mouseleave", () => activate(null));
        ul.append(li);
      });
      dx.append(el("h2", { text: "Diagnoses" }), ul);
    }
  }

  function lineRow(ln, i) {
    const conf = ln.confidence === null || ln.confidence === undefined ? "—" : ln.confidence.toFixed(2);
    const mk = (kind, label) => el("button", { type: "button", class: kind, "aria-pressed": "false",
      "data-kind": kind, "aria-label": `${label} ${ln.code}`, text: label, onclick: () => decide(i, kind) });
    const tr = el("tr", { class: "line", tabindex: "0", "data-line": String(i) },
      el("td", {}, el("span", { class: "code", text: ln.code }), el("div", { class: "reason", text: ln.system })),
      el("td", { text: String(ln.units) }),
      el("td", { text: ln.modifiers.join(" ") || "—" }),
      el("td", { text: ln.description || "" }),
      el("td", { text: conf }),
      el("td", { class: "reason" }, ln.reason || "", el("div", { text: ln.rule ? `rule ${ln.rule}` : "" })),
      el("td", {}, el("div", { class: "decide", role: "group", "aria-label": `Decision on ${ln.code}` },
        mk("accept", "Accept"), mk("reject", "Reject"), mk("edit", "Edit"))));
    tr.addEventListener("mouseenter", () => activate(i));
    tr.addEventListener("mouseleave", () => activate(document.activeElement && document.activeElement.closest && document.activeElement.closest("tr.line") ? Number(document.activeElement.closest("tr.line").dataset.line) : null));
    tr.addEventListener("focusin", () => activate(i));
    tr.addEventListener("keydown", (ev) => onRowKey(ev, i));
    return tr;
  }

  function onRowKey(ev, i) {
    if (ev.target.tagName === "INPUT") return;
    const rows = [...document.querySelectorAll("tr.line")];
    const key = ev.key.toLowerCase();
    if (key === "a") decide(i, "accept");
    else if (key === "r") decide(i, "reject");
    else if (key === "e") decide(i, "edit");
    else if (key === "arrowdown" || key === "j") { const n = rows[Math.min(i + 1, rows.length - 1)]; n && n.focus(); }
    else if (key === "arrowup" || key === "k") { const n = rows[Math.max(i - 1, 0)]; n && n.focus(); }
    else return;
    ev.preventDefault();
  }

  const KIND = { accept: "accepted", reject: "rejected", edit: "edited" };
  function decide(i, kind) {
    const decision = KIND[kind];
    state.decisions[i] = state.decisions[i] === decision ? null : decision;
    const tr = document.querySelector(`tr.line[data-line="${i}"]`);
    tr.dataset.decision = state.decisions[i] || "";
    for (const b of tr.querySelectorAll(".decide button")) b.setAttribute("aria-pressed", String(b.dataset.kind === kind && !!state.decisions[i]));
    const existing = document.querySelector(`tr.edit-row[data-line="${i}"]`);
    if (existing) existing.remove();
    if (state.decisions[i] === "edited") {
      const e = state.edits[i];
      const input = (label, key, width) => {
        const id = `edit-${key}-${i}`;
        const inp = el("input", { id, value: e[key], size: width });
        inp.addEventListener("input", () => { e[key] = inp.value; });
        return [el("label", { for: id, text: label + " " }), inp];
      };
      const row = el("tr", { class: "edit-row", "data-line": String(i) },
        el("td", { colspan: "7" }, ...input("Code", "code", 8), ...input("Units", "units", 6), ...input("Modifiers", "modifiers", 10)));
      tr.after(row);
      row.querySelector("input").focus();
    }
    $("submit-status").textContent = "";
  }

  // Evidence: the note is split at every evidence boundary; each piece knows which lines cite it.
  function renderNote(r) {
    const view = $("note-view");
    view.textContent = "";
    const cps = Array.from(state.text); // engine offsets count code points
    const spans = [];
    r.lines.forEach((ln, i) => ln.evidence.forEach((e) => spans.push({ s: e.start, e: e.end, id: String(i), dx: false })));
    r.diagnoses.forEach((d, j) => (d.evidence || []).forEach((e) => spans.push({ s: e.start, e: e.end, id: "d" + j, dx: true })));
    const cuts = new Set([0, cps.length]);
    for (const sp of spans) { cuts.add(Math.max(0, Math.min(sp.s, cps.length))); cuts.add(Math.max(0, Math.min(sp.e, cps.length))); }
    const points = [...cuts].sort((a, b) => a - b);
    for (let k = 0; k + 1 < points.length; k++) {
      const a = points[k], b = points[k + 1];
      const piece = cps.slice(a, b).join("");
      const covering = spans.filter((sp) => sp.s <= a && sp.e >= b);
      if (!covering.length) { view.append(piece); continue; }
      const onlyDx = covering.every((sp) => sp.dx);
      view.append(el("mark", { class: "ev" + (onlyDx ? " dx" : ""), "data-ids": " " + covering.map((sp) => sp.id).join(" ") + " ", text: piece }));
    }
    note.hidden = true;
    view.hidden = false;
    $("edit-note").hidden = false;
  }

  function activate(id) {
    for (const m of document.querySelectorAll("mark.ev.active")) m.classList.remove("active");
    for (const t of document.querySelectorAll("tr.line.active, #diagnoses li.active")) t.classList.remove("active");
    if (id === null || id === undefined) return;
    const marks = document.querySelectorAll(`mark.ev[data-ids~="${id}"]`);
    marks.forEach((m) => m.classList.add("active"));
    const owner = typeof id === "number" ? document.querySelector(`tr.line[data-line="${id}"]`) : document.querySelector(`#diagnoses li[data-dx="${id.slice(1)}"]`);
    if (owner) owner.classList.add("active");
    if (marks.length) {
      const view = $("note-view");
      const m = marks[0];
      if (m.offsetTop < view.scrollTop || m.offsetTop > view.scrollTop + view.clientHeight - 30) view.scrollTop = m.offsetTop - 40;
    }
  }

  // ---- submit decisions ----------------------------------------------------------------------
  $("submit-btn").addEventListener("click", async () => {
    const r = state.result;
    if (!r) return;
    const decisions = [];
    for (let i = 0; i < r.lines.length; i++) {
      const d = state.decisions[i];
      if (!d) continue;
      const item = { line: i, code: r.lines[i].code, decision: d };
      if (d === "edited") {
        const e = state.edits[i];
        const units = Number(e.units);
        item.final = { code: String(e.code).trim().toUpperCase(), units: Number.isFinite(units) ? units : null,
          modifiers: String(e.modifiers).split(/[\s,]+/).filter(Boolean).map((m) => m.toUpperCase()), system: r.lines[i].system };
      }
      decisions.push(item);
    }
    const out = $("submit-status");
    if (!decisions.length) { out.textContent = "Accept, reject or edit at least one line first."; return; }
    $("submit-btn").disabled = true;
    try {
      const resp = await api("/v1/feedback", { json: { suggestion_id: r.suggestion_id, decisions } });
      out.textContent = `Saved ${resp.stored} decision${resp.stored === 1 ? "" : "s"}.`;
      out.className = "";
    } catch (e) {
      out.textContent = e.message;
      out.className = "error";
    } finally {
      $("submit-btn").disabled = false;
    }
  });

  start();
})();
