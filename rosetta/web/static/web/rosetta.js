// Rosetta web UI: progressive enhancement of server-rendered pages.
// Every page works without this file; with it, phases, events and logs follow live
// through the REST API. Data from the server is only ever written with textContent.
"use strict";

(function () {
  const POLL_MS = 1500;  // while something is changing
  const IDLE_POLL_MS = 10000;  // while nothing is expected to change
  // The phase sets come from the server, which defines them once (rosetta.tasks).
  const FINAL_PHASES = new Set(document.body.dataset.finalPhases.split(" "));
  const CONTAINER_PHASES = new Set(document.body.dataset.livePhases.split(" "));
  const SETTLED_PHASES = new Set([...FINAL_PHASES, "running"]);
  const MAX_LOG_CHARS = 2 * 1024 * 1024;

  // ---- small helpers ------------------------------------------------------

  function formatTime(iso, withSeconds) {
    if (!iso) return "—";
    const text = new Date(iso).toISOString().replace("T", " ");
    return text.slice(0, withSeconds ? 19 : 16);
  }

  function setTime(element, iso, withSeconds) {
    if (!element) return;
    element.textContent = formatTime(iso, withSeconds);
    if (iso) element.setAttribute("datetime", iso);
    else element.removeAttribute("datetime");
  }

  function setPhase(badge, phase) {
    badge.className = "badge phase-" + phase;
    badge.textContent = phase;
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function urlFor(template, id) {
    return template.replace("__id__", encodeURIComponent(id));
  }

  // The API refuses the page's session: it was logged out (in another tab, say) or its account
  // deactivated. Asking again cannot help; the page stops and says so.
  class SessionEnded extends Error {}

  // Resolves to the parsed body, or null when the resource is gone (404).
  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 404) return null;
    if (response.status === 401 || response.status === 403) throw new SessionEnded(url + ": HTTP " + response.status);
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  // Said once, at the top of the page (and kept in view), with the way back in. The file
  // manager and the build page raise the same event when the API refuses them.
  function showSessionEnded() {
    if (document.querySelector("[data-session-ended]")) return;
    const notice = element("p", { class: "message message-error session-ended", role: "alert", "data-session-ended": "" },
      "You are no longer logged in (you logged out, or your account was deactivated), so this page has stopped "
      + "updating and what it shows may be out of date. ");
    const next = window.location.pathname + window.location.search;
    notice.append(element("a", { href: document.body.dataset.loginUrl + "?next=" + encodeURIComponent(next) }, "Log in again"), ".");
    document.querySelector("main").prepend(notice);
  }
  document.addEventListener("rosetta:session-ended", showSessionEnded);

  function sessionEnded() {
    document.dispatchEvent(new CustomEvent("rosetta:session-ended"));
  }

  // Calls `step` until it returns false; it may return the delay before the next call (ms,
  // POLL_MS by default). Transient errors just wait for the next round; a session that ended
  // stops it.
  function poll(step) {
    async function tick() {
      let next = POLL_MS;
      if (!document.hidden) {
        try {
          const result = await step();
          if (result === false) return;
          if (typeof result === "number") next = result;
        } catch (error) {
          if (error instanceof SessionEnded) {
            sessionEnded();
            return;
          }
          console.debug("rosetta: poll failed, retrying", error);
        }
      }
      setTimeout(tick, next);
    }
    setTimeout(tick, POLL_MS);
  }

  // Poll often while a task is on its way somewhere, rarely once every task has settled.
  function pollDelay(tasks) {
    return tasks.every((task) => SETTLED_PHASES.has(task.phase) && task.desired !== "deleted"
      && (task.desired === "running" || FINAL_PHASES.has(task.phase))) ? IDLE_POLL_MS : POLL_MS;
  }

  // ---- relative times ---------------------------------------------------

  // 12 s, 3 min, 2 h, 4 d: as rosetta.web.templatetags says them.
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (seconds >= size) return Math.floor(seconds / size) + " " + unit;
    }
    return seconds + " s";
  }

  // 0:42, 1:05:00
  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    const rest = String(seconds % 60).padStart(2, "0");
    return hours ? hours + ":" + String(minutes).padStart(2, "0") + ":" + rest : minutes + ":" + rest;
  }

  function secondsSince(iso) {
    return (Date.now() - new Date(iso).getTime()) / 1000;
  }

  // "58 min", "1 h 30 min", "1 d 2 h": what a time limit leaves, as rosetta.core.units says it.
  function limitWords(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    const minutes = Math.floor(seconds / 60);
    const parts = [[Math.floor(minutes / 1440), "d"], [Math.floor((minutes % 1440) / 60), "h"], [minutes % 60, "min"]];
    return parts.filter(([count]) => count).map(([count, unit]) => count + " " + unit).join(" ");
  }

  // "running for 2 h", "failed 3 min ago"; " · 58 min left" before a batch job's time limit
  function refreshSince(root) {
    for (const time of root.querySelectorAll("time[data-since]")) {
      const took = duration(secondsSince(time.dataset.since));
      time.textContent = time.dataset.final === "true"
        ? time.dataset.phaseLabel + " " + took + " ago" : time.dataset.phaseLabel + " for " + took;
    }
    for (const left of root.querySelectorAll("[data-left-until]")) {
      left.textContent = " · " + limitWords(-secondsSince(left.dataset.leftUntil)) + " left";
    }
  }

  // ---- task list ----------------------------------------------------------

  // The rows are the server's to render: when what the API lists changes (a task appears,
  // goes, or changes phase), the list is fetched again as HTML and swapped in. The card names
  // the API pages that list its rows (active tasks, then a page of finished ones), in order.
  async function listedTasks(card) {
    const tasks = [];
    for (const url of card.dataset.api.split(" ").filter(Boolean)) {
      const page = await getJSON(url);
      if (!page) return null;
      tasks.push(...page.items);
    }
    return tasks;
  }

  function initTaskList(card) {
    function signature(tasks) {
      return tasks.map((task) => task.id + ":" + task.phase + ":" + task.desired).join(" ");
    }
    function signatureOfPage() {
      return Array.from(card.querySelectorAll("tr[data-task-id]"),
        (row) => row.dataset.taskId + ":" + row.dataset.phase + ":" + row.dataset.desired).join(" ");
    }
    setInterval(() => refreshSince(card), 15000);
    poll(async () => {
      const tasks = await listedTasks(card);
      if (!tasks) return POLL_MS;
      if (signature(tasks) !== signatureOfPage()) {
        const response = await fetch(window.location.href, { credentials: "same-origin" });
        if (response.ok) {
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
          const freshCard = fresh.querySelector("[data-task-list]");
          if (freshCard) {
            card.replaceChildren(...freshCard.childNodes);
            card.dataset.api = freshCard.dataset.api;
            card.querySelectorAll("form[data-confirm], form[data-scratch]").forEach(confirmBeforeSubmit);
          }
        }
      }
      return pollDelay(tasks);
    });
  }

  // ---- task logs ----------------------------------------------------------

  class LogPanel {
    constructor(pre, status, url) {
      this.pre = pre;
      this.status = status;
      this.url = url;
      this.abort = null;
      this.length = pre.textContent.length;
    }

    get streaming() {
      return this.abort !== null;
    }

    clear() {
      this.pre.textContent = "";
      this.length = 0;
    }

    append(text) {
      if (!text) return;
      const atBottom = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 40;
      this.pre.append(document.createTextNode(text));
      this.length += text.length;
      this.trim();
      if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
    }

    // Long-running tasks can print without end: keep the newest output only.
    trim() {
      while (this.length > MAX_LOG_CHARS && this.pre.firstChild) {
        this.length -= this.pre.firstChild.textContent.length;
        this.pre.firstChild.remove();
      }
    }

    stop() {
      if (this.abort) this.abort.abort();
      this.abort = null;
    }

    // Shows the output from the start, then whatever follows until the stream ends.
    async follow() {
      await this.read(true);
    }

    // The final output of an ended task, read once.
    async readOnce() {
      this.pre.dataset.final = "";  // empty now means it wrote nothing, not nothing yet
      await this.read(false);
    }

    async read(follow) {
      this.stop();
      const abort = new AbortController();
      this.abort = abort;
      this.status.textContent = follow ? "following…" : "loading…";
      let first = true;
      try {
        const response = await fetch(this.url + "?follow=" + follow, { credentials: "same-origin", signal: abort.signal });
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          if (first) { this.clear(); first = false; }
          this.append(decoder.decode(value, { stream: true }));
        }
        if (first) this.clear();
        this.append(decoder.decode());
      } catch (error) {
        if (abort.signal.aborted) return;  // replaced by a newer read
        this.status.textContent = "(could not read the logs)";
        this.abort = null;
        return;
      }
      if (this.abort === abort) {
        this.abort = null;
        this.status.textContent = "(log stream ended)";
      }
    }
  }

  // ---- task page ----------------------------------------------------------

  function initTaskDetail(root) {
    const api = root.dataset.api;
    const badge = root.querySelector('h1 [data-field="phase"]');
    const announce = root.querySelector("[data-announce]");
    const progress = root.querySelector("[data-progress]");
    const events = root.querySelector("[data-events]");
    const logs = new LogPanel(root.querySelector("[data-logs]"), root.querySelector("[data-log-status]"), api + "/logs");
    let phase = root.dataset.phase;

    function showActions(task) {
      for (const control of root.querySelectorAll("[data-show-when]")) {
        const phases = control.dataset.showWhen.split(" ");
        const stopRequested = control.tagName === "FORM" && task.desired !== "running";
        control.hidden = !phases.includes(task.phase) || stopRequested;
      }
    }

    function renderEvents(list) {
      if (events.rows.length === list.length) return;  // events are only ever appended
      const rows = list.map((event) => {
        const row = element("tr");
        const time = element("td", { class: "nowrap" });
        time.append(element("time", { datetime: event.time }, formatTime(event.time, true).slice(11)));
        const eventPhase = element("td");
        const eventBadge = element("span");
        setPhase(eventBadge, event.phase);
        eventPhase.append(eventBadge);
        const reason = element("td", { class: "text" }, event.reason);
        if (event.detail) {  // the API gives it to staff only
          const detail = element("details", { class: "event-detail" });
          detail.append(element("summary", {}, "The resource's own words"), element("pre", {}, event.detail));
          reason.append(detail);
        }
        row.append(time, eventPhase, reason);
        return row;
      });
      events.replaceChildren(...rows);
    }

    // Where a batch scheduler has the task, and how long its time limit leaves it.
    function renderPlacement(task) {
      const placement = task.placement || {};
      for (const name of ["job", "node", "reason"]) {
        const field = root.querySelector('[data-field="placement-' + name + '"]');
        if (field) field.textContent = placement[name] || "—";
      }
      setTime(root.querySelector('[data-field="placement-starts_at"]'), placement.starts_at, false);
      const left = root.querySelector('[data-field="time-left"]');
      if (left) left.dataset.endsAt = FINAL_PHASES.has(task.phase) ? "" : (placement.ends_at || "");
      showTimeLeft();
    }

    function showTimeLeft() {
      const left = root.querySelector('[data-field="time-left"]');
      if (!left) return;
      left.textContent = left.dataset.endsAt ? limitWords(-secondsSince(left.dataset.endsAt)) : "—";
    }
    showTimeLeft();
    setInterval(showTimeLeft, 30000);

    function phaseLabel(task) {
      return task.phase === "exited" && task.exit_code !== null && task.exit_code !== 0
        ? "exited (" + task.exit_code + ")" : task.phase;
    }

    // "waiting for the interface to answer · 0:42 of 2:00", ticking every second.
    function showElapsed() {
      const elapsed = progress && progress.querySelector('[data-field="elapsed"]');
      if (!elapsed || !elapsed.dataset.since) return;
      const timeout = parseFloat(elapsed.dataset.timeout);
      elapsed.textContent = clock(secondsSince(elapsed.dataset.since)) + (timeout ? " of " + clock(timeout) : "");
    }
    showElapsed();
    setInterval(showElapsed, 1000);

    function renderProgress(task) {
      if (!progress) return;
      progress.hidden = !task.waiting_for;
      progress.querySelector('[data-field="waiting_for"]').textContent = task.waiting_for;
      const elapsed = progress.querySelector('[data-field="elapsed"]');
      elapsed.dataset.since = task.phase_since;
      elapsed.dataset.timeout = task.phase_timeout === null ? "" : String(task.phase_timeout);
      const warning = progress.querySelector('[data-field="warning"]');
      warning.textContent = task.warning;
      warning.hidden = !task.warning;
      showElapsed();
    }

    function render(task) {
      badge.className = "badge " + (task.outcome === "failed" ? "phase-failed" : "phase-" + task.phase);
      badge.textContent = phaseLabel(task);
      renderProgress(task);
      setTime(root.querySelector('[data-field="started"]'), task.started, true);
      setTime(root.querySelector('[data-field="finished"]'), task.finished, true);
      root.querySelector('[data-field="exit_code"]').textContent = task.exit_code === null ? "—" : String(task.exit_code);
      showActions(task);
      renderEvents(task.events);
      renderPlacement(task);
    }

    // A container's output exists from `starting` on; once the task ends, its saved tail is the record.
    function followLogsOnPhaseChange(newPhase) {
      if (newPhase === phase) return;
      if (announce) announce.textContent = "The task is now " + newPhase + ".";
      if (FINAL_PHASES.has(newPhase)) logs.readOnce();
      else if (CONTAINER_PHASES.has(newPhase) && !CONTAINER_PHASES.has(phase)) logs.follow();
      phase = newPhase;
    }

    function showGone() {
      logs.stop();
      root.querySelector("[data-gone]").hidden = false;
      for (const control of root.querySelectorAll("[data-show-when], form[data-confirm]")) control.hidden = true;
    }

    document.addEventListener("rosetta:session-ended", () => {
      if (!logs.streaming) return;
      logs.stop();
      logs.status.textContent = "(stopped: you are no longer logged in)";
    });

    if (FINAL_PHASES.has(phase)) logs.readOnce();
    else if (CONTAINER_PHASES.has(phase)) logs.follow();
    else logs.status.textContent = "waiting for the task to start…";

    poll(async () => {
      const task = await getJSON(api);
      if (task === null) {
        showGone();
        return false;
      }
      render(task);
      // A task that just ended gets its outcome (why, and Relaunch) from the server's page.
      if (FINAL_PHASES.has(task.phase) && !FINAL_PHASES.has(phase)) {
        window.location.reload();
        return false;
      }
      followLogsOnPhaseChange(task.phase);
      return pollDelay([task]);
    });
  }

  // ---- small behaviours -----------------------------------------------------

  // A form with data-confirm asks first. One with data-scratch (Stop, Delete of a task whose home
  // is scratch space) asks the API what stopping would lose, and asks only when something would.
  function confirmBeforeSubmit(form) {
    form.addEventListener("submit", async (event) => {
      if (!form.dataset.scratch) {
        if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
        return;
      }
      event.preventDefault();
      let warning = "";
      try {
        const scratch = await getJSON(form.dataset.scratch);
        warning = scratch ? scratch.warning : "";
      } catch (error) {
        warning = "Rosetta could not find out what is in this task's home, which is scratch space: "
          + "whatever is there is lost when the task stops.";
      }
      const question = warning ? warning + "\n\n" + (form.dataset.confirm || "Stop the task anyway?") : form.dataset.confirm;
      if (!question || window.confirm(question)) form.submit();  // submit() fires no second submit event
    });
  }

  // What the new task keeps: its home is the ticked storage mounted there on the chosen resource, or scratch.
  function initHomeNote(form, resource) {
    const note = form.querySelector("[data-home-note]");
    if (!note) return;
    function update() {
      const on = resource ? resource.value : "";
      const home = Array.from(form.querySelectorAll('input[name="storages"]')).find((box) => box.checked
        && box.dataset.mount === note.dataset.home && (box.dataset.on || "").split(" ").includes(on));
      note.textContent = home ? note.dataset.kept.replace("{name}", home.value) : note.dataset.scratch;
    }
    form.querySelectorAll('input[name="storages"]').forEach((box) => box.addEventListener("change", update));
    if (resource) resource.addEventListener("change", update);
    update();
  }

  function copyButton(button) {
    const input = button.parentElement.querySelector("[data-secret]");
    button.addEventListener("click", async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        button.textContent = "Copied";
      } catch (error) {
        button.textContent = "Press Ctrl+C";  // clipboard API unavailable (e.g. plain http)
      }
    });
  }

  // The new-task form: the chosen software's description, and the chosen resource's limits
  // beside the fields and as the inputs' bounds; a batch resource's fields (partition, time
  // limit) only when it has a batch scheduler, with its partitions' limits as the server words them.
  function initTaskForm(form) {
    const software = form.querySelector('select[name="software"]');
    const resource = form.querySelector('select[name="resource"]');
    const description = form.querySelector("[data-software-description]");
    const cpus = form.querySelector('input[name="cpus"]');
    const memory = form.querySelector('input[name="memory_mb"]');
    const batch = form.querySelector("[data-batch-fields]");
    function helpOf(input) {
      return input && input.closest(".field").querySelector(".help");
    }
    function showBatch(chosen) {
      if (!batch) return;
      batch.hidden = chosen.dataset.batch !== "true";
      if (batch.hidden) return;
      for (const input of batch.querySelectorAll("[name]")) {
        const help = helpOf(input);
        const said = chosen.dataset[input.name.replace(/_(.)/g, (_, letter) => letter.toUpperCase()) + "Help"];
        if (help && said) help.textContent = said;
      }
      offerPartitions(chosen);
    }
    // The chosen resource's partitions as a select, its default marked (as the server renders
    // it for the resource shown first); free text where they are not known.
    function offerPartitions(chosen) {
      const current = batch.querySelector('[name="partition"]');
      if (!current) return;
      const names = (chosen.dataset.partitions || "").split(" ").filter(Boolean);
      const fallback = chosen.dataset.defaultPartition || "";
      let control;
      if (names.length) {
        control = element("select");
        if (!names.includes(fallback)) {
          control.append(element("option", { value: "" }, fallback ? fallback + " (default)" : "the resource's default"));
        }
        for (const name of names) control.append(element("option", { value: name }, name === fallback ? name + " (default)" : name));
        const kept = names.includes(current.value) ? current.value : (names.includes(fallback) ? fallback : "");
        control.value = kept;
      } else {
        control = element("input", { type: "text", spellcheck: "false", autocomplete: "off", maxlength: "64" });
        control.value = current.tagName === "INPUT" ? current.value : "";
      }
      for (const name of ["name", "id", "aria-describedby", "aria-invalid"]) {
        if (current.hasAttribute(name)) control.setAttribute(name, current.getAttribute(name));
      }
      current.replaceWith(control);
    }
    function update() {
      const chosenSoftware = software && software.selectedOptions[0];
      if (description && chosenSoftware) description.textContent = chosenSoftware.dataset.description || "";
      const chosen = resource && resource.selectedOptions[0];
      if (!chosen || !chosen.dataset.maxCpus) return;
      const resourceHelp = helpOf(resource);
      if (resourceHelp) resourceHelp.textContent = chosen.dataset.quota || "";
      cpus.max = chosen.dataset.maxCpus;
      const cpusHelp = helpOf(cpus);
      if (cpusHelp) cpusHelp.textContent = "Up to " + chosen.dataset.maxCpus + " on " + chosen.value + ".";
      const memoryHelp = helpOf(memory);
      if (memoryHelp) memoryHelp.textContent = "e.g. 512M or 2G; from 16M up to " + chosen.dataset.maxMemory + " on " + chosen.value + ".";
      showBatch(chosen);
    }
    if (software) software.addEventListener("change", update);
    if (resource) resource.addEventListener("change", update);
    update();
    initHomeNote(form, resource);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-task-form]").forEach(initTaskForm);
    document.querySelectorAll("form[data-confirm], form[data-scratch]").forEach(confirmBeforeSubmit);
    document.querySelectorAll("[data-copy]").forEach(copyButton);
    document.querySelectorAll("[data-task-list]").forEach(initTaskList);
    document.querySelectorAll("[data-task-detail]").forEach(initTaskDetail);
    // The hand-over to a task's origin: the visible button stays for browsers without JS.
    document.querySelectorAll("form[data-autosubmit]").forEach((form) => form.submit());
  });
})();
