// Rosetta file manager: lists a storage's folders and acts on them through the REST API.
// Uploads stream each file as the request body (XHR, for its progress events); downloads are
// plain links the browser streams to disk. Names from the server are only ever written with
// textContent. Keyboard: arrows move between rows, Enter opens, Space selects, F2 renames,
// Delete deletes, Backspace goes up a folder.
"use strict";

(function () {
  const root = document.querySelector("[data-file-manager]");
  if (!root) return;
  const api = root.dataset.api;
  const csrf = root.dataset.csrf;
  const readOnly = root.dataset.readOnly === "true";
  const $ = (selector) => root.querySelector(selector);
  const body = $("[data-entries]");
  const preview = $("[data-preview]");
  const TEXT_LIMIT = 512 * 1024;  // bytes of a text file shown in the preview
  const IMAGE = /\.(png|jpe?g|gif|webp)$/i;
  const FITS = /\.(fits?|fts)$/i;
  const TEXT = /\.(txt|log|md|csv|tsv|json|ya?ml|toml|ini|cfg|conf|py|r|jl|c|h|cpp|f90|sh|sql|xml|html?|tex|dat|ipynb|reg)$/i;

  let path = new URLSearchParams(location.search).get("path") || "";
  let entries = [];
  let sort = { key: "name", ascending: true };
  const selected = new Set();

  // ---- helpers -------------------------------------------------------------------------

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function join(folder, name) { return folder ? folder + "/" + name : name; }

  function url(endpoint, params) { return api + endpoint + "?" + new URLSearchParams(params).toString(); }

  function formatSize(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? value + " B" : value.toFixed(1) + " " + units[unit];
  }

  function formatTime(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 16);
  }

  // A name that must wrap breaks after its separators (_ - . and the like) before it breaks
  // inside a word: "ngc1300_r-band_" / "stack.fits", not "ngc13" / "00_r-b" ... Text nodes only.
  function breakableName(node, name) {
    name.split(/(?<=[_\-.,+=@~])/).forEach((part, index) => {
      if (index) node.append(document.createElement("wbr"));
      node.append(document.createTextNode(part));
    });
    return node;
  }

  // "2026-01-05 18:49": the date and the time stay whole, a narrow column puts them on two lines.
  function timeCell(seconds) {
    const [day, time] = formatTime(seconds).split(" ");
    const cell = element("td", { class: "modified" });
    cell.append(element("span", { class: "nowrap" }, day), " ", element("span", { class: "nowrap" }, time));
    return cell;
  }

  function showError(text) {
    const box = $("[data-error]");
    box.textContent = text || "";
    box.hidden = !text;
  }

  async function call(method, endpoint, params, payload) {
    const response = await fetch(url(endpoint, params || {}), {
      method, credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Content-Type": "application/json", Accept: "application/json" },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401) sessionEnded();
      throw new Error(answer.detail || "HTTP " + response.status);
    }
    return answer;
  }

  // The session is over (logged out elsewhere, or the account deactivated): rosetta.js says so
  // once at the top of the page, with the way back in.
  function sessionEnded() {
    document.dispatchEvent(new CustomEvent("rosetta:session-ended"));
  }

  // A small modal: a question, optionally with a text field. Resolves to the text (or true), or
  // null when cancelled; an empty text resolves to null too, unless `emptyMeans` is given.
  function ask(question, value, emptyMeans) {
    const dialog = $("[data-dialog]");
    const input = $("[data-dialog-input]");
    $("[data-dialog-text]").textContent = question;
    input.hidden = value === undefined;
    input.value = value || "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", function closed() {
        dialog.removeEventListener("close", closed);
        if (dialog.returnValue !== "ok") resolve(null);
        else if (value === undefined) resolve(true);
        else resolve(input.value.trim() || (emptyMeans === undefined ? null : emptyMeans));
      });
      dialog.returnValue = "";
      dialog.showModal();
      if (value !== undefined) { input.focus(); input.select(); } else $("[data-dialog-ok]").focus();
    });
  }

  // ---- listing -------------------------------------------------------------------------

  function renderBreadcrumbs() {
    const nav = $("[data-breadcrumbs]");
    nav.replaceChildren();
    const parts = path ? path.split("/") : [];
    const crumbs = [[root.dataset.storage, ""]];
    parts.forEach((part, index) => crumbs.push([part, parts.slice(0, index + 1).join("/")]));
    crumbs.forEach(([label, target], index) => {
      if (index > 0) nav.append(element("span", { class: "sep", "aria-hidden": "true" }, "/"));
      if (index === crumbs.length - 1) {
        nav.append(element("span", { "aria-current": "page" }, label));
      } else {
        const link = element("a", { href: "?path=" + encodeURIComponent(target) }, label);
        link.addEventListener("click", (event) => { event.preventDefault(); go(target); });
        nav.append(link);
      }
    });
  }

  function sorted() {
    const showHidden = $("[data-hidden-toggle]").checked;
    const shown = entries.filter((entry) => showHidden || !entry.name.startsWith("."));
    const direction = sort.ascending ? 1 : -1;
    return shown.sort((a, b) => {
      if ((a.kind === "folder") !== (b.kind === "folder")) return a.kind === "folder" ? -1 : 1;
      const x = a[sort.key], y = b[sort.key];
      const order = typeof x === "string" ? x.localeCompare(y, undefined, { numeric: true }) : x - y;
      return direction * (order || a.name.localeCompare(b.name));
    });
  }

  function render() {
    body.replaceChildren();
    const folder = path;  // the folder these rows are in, whatever `path` becomes later
    const shown = sorted();
    if (!shown.length) {
      const row = element("tr");
      row.append(element("td", { colspan: "4", class: "muted" }, "This folder is empty."));
      body.append(row);
    }
    for (const entry of shown) {
      const row = element("tr", { "data-name": entry.name });
      if (selected.has(entry.name)) row.classList.add("selected");
      const box = element("input", { type: "checkbox", "aria-label": "Select " + entry.name, tabindex: "-1" });
      box.checked = selected.has(entry.name);
      box.addEventListener("change", () => toggle(entry.name, box.checked));
      const pick = element("td", { class: "select" });
      pick.append(box);
      const name = element("td");
      const open = breakableName(element("button", { type: "button", class: "entry " + entry.kind }), entry.name);
      if (entry.kind === "link") open.title = "→ " + entry.target + " (links are not followed)";
      // A double click is two clicks: the second (detail 2) must not open the folder again,
      // from inside itself, before the new listing has replaced this row.
      open.addEventListener("click", (event) => { if (event.detail <= 1) activate(entry, folder); });
      open.addEventListener("keydown", (event) => onRowKey(event, entry, row));
      name.append(open);
      row.append(pick, name,
        element("td", { class: "right nowrap" }, entry.kind === "file" ? formatSize(entry.size) : ""),
        timeCell(entry.modified));
      body.append(row);
    }
    for (const header of root.querySelectorAll("thead th")) header.removeAttribute("aria-sort");
    const active = root.querySelector(`button.sort[data-sort="${sort.key}"]`).closest("th");
    active.setAttribute("aria-sort", sort.ascending ? "ascending" : "descending");
    updateToolbar();
  }

  let loading = 0;  // the latest listing asked for: an older one arriving late is dropped

  async function load() {
    showError("");
    renderBreadcrumbs();
    const asked = ++loading;
    const folder = path;
    try {
      const listing = await call("GET", "/entries", { path: folder });
      if (asked !== loading) return;
      entries = listing.entries;
      for (const name of [...selected]) if (!entries.some((entry) => entry.name === name)) selected.delete(name);
      render();
    } catch (error) {
      if (asked !== loading) return;
      entries = [];
      render();
      showError(error.message);
    }
  }

  function go(folder, push = true) {
    path = folder;
    selected.clear();
    closePreview();
    if (push) history.pushState({ path }, "", "?path=" + encodeURIComponent(path));
    load().then(() => { const first = body.querySelector("button.entry"); if (first) first.focus(); });
  }

  window.addEventListener("popstate", () => go(new URLSearchParams(location.search).get("path") || "", false));

  function toggle(name, on) {
    if (on) selected.add(name); else selected.delete(name);
    const row = body.querySelector(`tr[data-name="${CSS.escape(name)}"]`);
    if (row) { row.classList.toggle("selected", on); row.querySelector("input").checked = on; }
    updateToolbar();
  }

  function updateToolbar() {
    for (const button of root.querySelectorAll("[data-needs]")) {
      button.disabled = button.dataset.needs === "1" ? selected.size !== 1 : selected.size === 0;
    }
    const all = $("[data-select-all]");
    const shown = sorted();
    all.checked = shown.length > 0 && shown.every((entry) => selected.has(entry.name));
  }

  // `folder`: where the row was listed. A row of a listing already left behind does nothing.
  function activate(entry, folder) {
    if (folder !== path) return;
    if (entry.kind === "folder") go(join(folder, entry.name));
    else if (entry.kind === "file") showPreview(entry);
  }

  function onRowKey(event, entry, row) {
    const rows = [...body.querySelectorAll("button.entry")];
    const index = rows.indexOf(event.target);
    if (event.key === "ArrowDown" && index < rows.length - 1) { rows[index + 1].focus(); event.preventDefault(); }
    else if (event.key === "ArrowUp" && index > 0) { rows[index - 1].focus(); event.preventDefault(); }
    else if (event.key === " ") { toggle(entry.name, !selected.has(entry.name)); event.preventDefault(); }
    else if (event.key === "F2" && !readOnly) { selected.clear(); toggle(entry.name, true); rename(); event.preventDefault(); }
    else if (event.key === "Delete" && !readOnly) {
      if (!selected.size) toggle(entry.name, true);
      remove();
      event.preventDefault();
    }
  }

  document.addEventListener("keydown", (event) => {
    if (event.key === "Backspace" && path && !event.target.closest("input, textarea, dialog")) {
      go(path.split("/").slice(0, -1).join("/"));
      event.preventDefault();
    }
  });

  // ---- preview -------------------------------------------------------------------------

  function closePreview() {
    preview.hidden = true;
    preview.parentElement.classList.remove("previewing");
    $("[data-preview-body]").replaceChildren();
  }

  $("[data-preview-close]").addEventListener("click", closePreview);

  async function showPreview(entry) {
    const target = join(path, entry.name);
    const place = $("[data-preview-body]");
    const title = $("[data-preview-title]");
    title.replaceChildren();
    breakableName(title, entry.name);
    place.replaceChildren();
    preview.hidden = false;
    preview.parentElement.classList.add("previewing");
    const download = element("a", { class: "button small", href: url("/content", { path: target }), download: entry.name }, "Download");
    preview.scrollIntoView({ block: "nearest" });  // on a phone it sits above the list
    try {
      if (FITS.test(entry.name)) {
        const described = await call("GET", "/fits", { path: target });
        const image = described.hdus.find((hdu) => hdu.image);
        if (image) {
          place.append(element("img", { src: url("/fits.png", { path: target, hdu: image.index }), alt: "FITS image of " + entry.name + " (zscale)", "data-fits-image": "" }));
        }
        for (const hdu of described.hdus) {
          place.append(element("h3", {}, `HDU ${hdu.index} ${hdu.name} · ${hdu.kind}${hdu.shape.length ? " · " + hdu.shape.join("×") : ""}`));
          place.append(element("pre", { "data-fits-header": "" }, hdu.header));
        }
      } else if (IMAGE.test(entry.name)) {
        place.append(element("img", { src: url("/content", { path: target, inline: "true" }), alt: entry.name }));
      } else if (TEXT.test(entry.name) || entry.size < 64 * 1024) {
        place.append(element("pre", { "data-text-preview": "" }, await readText(target, entry.size)));
      } else {
        place.append(element("p", { class: "muted" }, "No preview for this kind of file."));
      }
    } catch (error) {
      place.append(element("p", { class: "message message-error" }, error.message));
    }
    place.append(download);
  }

  // The beginning of a file as text: the stream is read only as far as the preview shows.
  async function readText(target, size) {
    const response = await fetch(url("/content", { path: target, inline: "true" }), { credentials: "same-origin" });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).detail || "HTTP " + response.status);
    const reader = response.body.getReader();
    const chunks = [];
    let length = 0;
    while (length < TEXT_LIMIT) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      length += value.length;
    }
    reader.cancel();
    const text = new TextDecoder().decode(await new Blob(chunks).arrayBuffer());
    return size > TEXT_LIMIT ? text.slice(0, TEXT_LIMIT) + `\n… (${formatSize(size)} in all; download it to see the rest)` : text;
  }

  // ---- actions -------------------------------------------------------------------------

  function chosen() { return [...selected]; }

  async function act(work) {
    showError("");
    try { await work(); } catch (error) { showError(error.message); }
    await load();
  }

  async function mkdir() {
    const name = await ask("Name of the new folder:", "");
    if (name) await act(() => call("POST", "/folders", {}, { path: join(path, name) }));
  }

  async function rename() {
    const [name] = chosen();
    const renamed = await ask(`Rename “${name}” to:`, name);
    if (renamed && renamed !== name) {
      await act(() => call("POST", "/move", {}, { source: join(path, name), destination: join(path, renamed) }));
      selected.clear();
    }
  }

  async function moveOrCopy(verb) {
    const names = chosen();
    const folder = await ask(
      `${verb === "move" ? "Move" : "Copy"} ${names.length} item(s) into folder (a path from the storage's top folder, `
      + `such as results/2024; empty for the top folder itself):`, path, "");
    if (folder === null) return;
    const into = folder.replace(/^\/+|\/+$/g, "");
    await act(async () => {
      for (const name of names) {
        let destination = join(into, name);
        if (verb === "copy" && into === path) destination = join(into, "Copy of " + name);
        await call("POST", "/" + verb, {}, { source: join(path, name), destination });
      }
    });
    selected.clear();
    updateToolbar();
  }

  async function remove() {
    const names = chosen();
    const what = names.length === 1 ? `“${names[0]}”` : `${names.length} items`;
    if (!await ask(`Delete ${what}? Folders are deleted with everything in them. This cannot be undone.`)) return;
    await act(async () => { for (const name of names) await call("DELETE", "/entries", { path: join(path, name) }); });
    selected.clear();
    updateToolbar();
  }

  function download() {
    for (const name of chosen()) {
      const link = element("a", { href: url("/content", { path: join(path, name) }), download: name });
      document.body.append(link);
      link.click();
      link.remove();
    }
  }

  const ACTIONS = { mkdir, rename, move: () => moveOrCopy("move"), copy: () => moveOrCopy("copy"), delete: remove, download };
  for (const button of root.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => ACTIONS[button.dataset.action]());
  }
  $("[data-select-all]").addEventListener("change", (event) => {
    for (const entry of sorted()) toggle(entry.name, event.target.checked);
  });
  for (const button of root.querySelectorAll("button.sort")) {
    button.addEventListener("click", () => {
      sort = { key: button.dataset.sort, ascending: sort.key === button.dataset.sort ? !sort.ascending : true };
      render();
    });
  }
  $("[data-hidden-toggle]").addEventListener("change", render);
  $("[data-storage-pick]").addEventListener("change", (event) => { location.href = event.target.value; });

  // ---- uploads -------------------------------------------------------------------------

  // One PUT per file, its body the file itself: the browser streams it from disk, and the
  // platform writes it to the storage as it arrives.
  function uploadOne(file, folder) {
    return new Promise((resolve) => {
      const item = element("li");
      const bar = element("progress", { max: String(file.size || 1), value: "0", "aria-label": "Upload of " + file.name });
      const state = element("span", { class: "muted" }, "0%");
      item.append(breakableName(element("span"), file.name), bar, state);
      $("[data-uploads]").append(item);
      const request = new XMLHttpRequest();
      request.open("PUT", url("/content", { path: join(folder, file.name), overwrite: "true" }));
      request.setRequestHeader("X-CSRFToken", csrf);
      request.setRequestHeader("Content-Type", "application/octet-stream");
      request.upload.addEventListener("progress", (event) => {
        bar.value = event.loaded;
        state.textContent = Math.floor((100 * event.loaded) / (event.total || 1)) + "%";
      });
      request.addEventListener("load", () => {
        if (request.status === 201) {
          bar.value = file.size || 1;
          state.textContent = "done";
          item.dataset.done = "true";
          setTimeout(() => item.remove(), 4000);
        } else {
          let detail = "HTTP " + request.status;
          try { detail = JSON.parse(request.responseText).detail || detail; } catch (_) { /* not JSON */ }
          state.textContent = "failed: " + detail;
          state.className = "message-error";
        }
        resolve();
      });
      request.addEventListener("error", () => { state.textContent = "failed: connection lost"; resolve(); });
      request.send(file);
    });
  }

  async function upload(files) {
    const folder = path;
    const existing = new Set(entries.map((entry) => entry.name));
    const replacing = [...files].filter((file) => existing.has(file.name)).map((file) => file.name);
    if (replacing.length && !await ask(`Replace ${replacing.join(", ")}?`)) return;
    for (const file of files) await uploadOne(file, folder);  // one at a time: each at full speed
    if (folder === path) await load();
  }

  if (!readOnly) {
    const input = $("[data-upload]");
    input.addEventListener("change", () => { upload([...input.files]).then(() => { input.value = ""; }); });
    $("[data-upload-label]").addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { input.click(); event.preventDefault(); }
    });
    const drop = $("[data-drop]");
    root.addEventListener("dragover", (event) => { event.preventDefault(); drop.hidden = false; });
    root.addEventListener("dragleave", (event) => { if (!root.contains(event.relatedTarget)) drop.hidden = true; });
    root.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.hidden = true;
      const files = [...event.dataTransfer.files];
      if (files.length) upload(files);
    });
  }

  load();
})();
