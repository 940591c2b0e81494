// The build page: its log follows the build live (polling the API from the last offset),
// its state, failure reason and the link to the new entry too. Text only, never HTML.
"use strict";

(function () {
  const log = document.querySelector("[data-build-log]");
  if (!log) return;
  const state = document.querySelector("[data-build-state]");
  const reason = document.querySelector("[data-build-reason]");
  const entry = document.querySelector("[data-build-entry]");
  const queue = document.querySelector("[data-build-queue]");
  let offset = Number(log.dataset.offset || 0);
  const FINAL = new Set(["succeeded", "failed"]);

  function stickToEnd() { log.scrollTop = log.scrollHeight; }

  async function step() {
    const response = await fetch(log.dataset.url + "?offset=" + offset, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (response.status === 401 || response.status === 403) {  // logged out: rosetta.js says so
      document.dispatchEvent(new CustomEvent("rosetta:session-ended"));
      return false;
    }
    if (!response.ok) return 2000;
    const build = await response.json();
    if (build.log) {
      const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      log.append(document.createTextNode(build.log));
      if (atEnd) stickToEnd();
    }
    offset = build.next_offset;
    state.textContent = build.state;
    state.className = "badge build-" + build.state;
    queue.hidden = build.state !== "queued";
    if (build.state === "failed") {
      reason.hidden = false;
      reason.querySelector("[data-build-reason-text]").textContent = build.reason;
    }
    if (build.software) {
      entry.href = "/catalog/" + build.software + "/";
      entry.hidden = false;
    }
    return FINAL.has(build.state) ? false : 500;
  }

  async function tick() {
    let next = 2000;
    try { next = await step(); } catch (error) { console.debug("rosetta: build poll failed", error); }
    if (next !== false) setTimeout(tick, next);
  }
  stickToEnd();
  if (!log.dataset.final) setTimeout(tick, 300);
})();
