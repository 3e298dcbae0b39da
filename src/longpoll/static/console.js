/*
 * The console page of longpoll (console.html): the categories from the stats
 * endpoint, a live tail with longpoll.js (a Server-Sent Events stream, long polling
 * where streams do not get through), and a publish form. Every request goes to the
 * server's own endpoints with the tokens given on the page. Event data and category
 * names are only ever shown as text (textContent), never parsed as HTML.
 */
(function () {
  "use strict";

  const REFRESH_SECONDS = 2;
  const MAX_SHOWN_EVENTS = 200;
  const STORAGE_PREFIX = "longpoll-console-token-";
  const TOKENS = ["operations", "subscribe", "publish"];

  const byId = (id) => document.getElementById(id);
  const element = (tag, className, text) => {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    return made;
  };

  // The endpoints' paths are the app's; an ASGI framework may mount the app below a
  // path of its own, which is what precedes the console's path in the page's URL.
  const paths = document.documentElement.dataset;
  const here = location.pathname;
  const mount = here.endsWith(paths.console) ? here.slice(0, here.length - paths.console.length) : "";
  const endpoint = (path) => (path ? mount + path : null);
  const endpoints = {
    subscribe: endpoint(paths.subscribe),
    publish: endpoint(paths.publish),
    stats: endpoint(paths.stats),
    metrics: endpoint(paths.metrics),
  };

  // --- tokens ----------------------------------------------------------------------

  function storage() {
    try {
      return window.sessionStorage;
    } catch (error) {
      return null; // storage refused (a privacy setting): tokens last as long as the page
    }
  }

  function token(name) {
    const value = byId(`token-${name}`).value.trim();
    return value === "" ? undefined : value;
  }

  function authorization(name) {
    const value = token(name);
    return value === undefined ? {} : { Authorization: `Bearer ${value}` };
  }

  function askForToken(name) {
    byId("access").open = true;
    byId(`token-${name}`).focus();
  }

  // The server's own message from an error answer, else the status.
  function serverMessage(status, text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") return body.error;
    } catch (error) {
      // not JSON
    }
    return `the server answered ${status}`;
  }

  // --- categories ------------------------------------------------------------------

  let refreshTimer;
  let refreshing = false;
  let shownRows = "";

  function plural(count, one, many) {
    return `${count} ${count === 1 ? one : many}`;
  }

  function categoriesError(message) {
    const error = byId("categories-error");
    error.textContent = message;
    error.hidden = message === "";
  }

  function categoryRow(category) {
    const row = element("tr");
    const name = element("th", "name", category.name);
    name.scope = "row";
    const tail = element("button", "small", "Tail");
    tail.type = "button";
    tail.dataset.category = category.name;
    tail.setAttribute("aria-label", `Tail ${category.name}`);
    const action = element("td");
    action.append(tail);
    row.append(
      name,
      element("td", "number", String(category.buffered_events)),
      element("td", "number", String(category.waiting_subscribers)),
      action,
    );
    return row;
  }

  function showStats(stats) {
    categoriesError("");
    byId("summary").textContent =
      `${plural(stats.categories, "category", "categories")}, ` +
      `${plural(stats.buffered_events, "event", "events")} buffered, ` +
      `${plural(stats.waiting_subscribers, "subscriber", "subscribers")} waiting.`;
    const detail = Array.isArray(stats.categories_detail) ? stats.categories_detail : [];
    const rows = JSON.stringify(detail);
    if (rows !== shownRows) {
      // Rebuilt only when something changed: a button being pressed stays put.
      shownRows = rows;
      const body = byId("category-rows");
      if (detail.length === 0) {
        const empty = element("td", "hint", "No categories yet: publish an event.");
        empty.colSpan = 4;
        const row = element("tr");
        row.append(empty);
        body.replaceChildren(row);
      } else {
        body.replaceChildren(...detail.map(categoryRow));
      }
    }
    const note = byId("categories-note");
    note.hidden = false;
    note.textContent =
      (detail.length < stats.categories
        ? `Showing the ${detail.length} categories most recently published to. `
        : "") + "Waiting subscribers are those of the server process that answered.";
  }

  async function refresh() {
    clearTimeout(refreshTimer);
    if (!endpoints.stats) {
      categoriesError("The stats endpoint is off on this server: no list of categories.");
      return;
    }
    if (refreshing) return;
    refreshing = true;
    try {
      if (document.hidden) return; // refreshed again when the page is shown
      const response = await fetch(`${endpoints.stats}?categories=1`, {
        headers: authorization("operations"),
        cache: "no-store",
      });
      const text = await response.text();
      if (response.ok) {
        showStats(JSON.parse(text));
      } else if (response.status === 401) {
        categoriesError(
          `The stats endpoint needs the operations token (${serverMessage(401, text)}): ` +
            "give it under Tokens.",
        );
      } else {
        categoriesError(`Cannot list the categories: ${serverMessage(response.status, text)}.`);
      }
    } catch (error) {
      categoriesError(`Cannot reach the server: ${error.message}.`);
    } finally {
      refreshing = false;
      if (byId("auto-refresh").checked) {
        refreshTimer = setTimeout(refresh, REFRESH_SECONDS * 1000);
      }
    }
  }

  // --- live tail -------------------------------------------------------------------

  const tailed = [];
  let client = null;
  let lastFailure = "";

  function tailStatus() {
    let text;
    if (client === null) {
      text = tailed.length ? "Stopped." : "Add a category to tail.";
    } else if (lastFailure) {
      text = `${lastFailure} Trying again.`;
    } else {
      const way = client.activeTransport === "sse" ? "Server-Sent Events" : "long polling";
      text = `Tailing ${tailed.join(", ")} over ${way}.`;
    }
    byId("tail-status").textContent = text;
    const toggle = byId("tail-toggle");
    toggle.textContent = client === null ? "Start" : "Stop";
    toggle.disabled = client === null && tailed.length === 0;
  }

  function showChips() {
    const chips = tailed.map((name) => {
      const chip = element("li", "chip");
      const remove = element("button", "small", "×");
      remove.type = "button";
      remove.dataset.category = name;
      remove.setAttribute("aria-label", `Stop tailing ${name}`);
      chip.append(element("span", "", name), remove);
      return chip;
    });
    byId("tail-categories").replaceChildren(...chips);
  }

  function showEntry(item) {
    const list = byId("tail-events");
    list.prepend(item);
    while (list.children.length > MAX_SHOWN_EVENTS) list.lastElementChild.remove();
  }

  function timeOf(timestamp) {
    const date = new Date(timestamp);
    const milliseconds = String(date.getMilliseconds()).padStart(3, "0");
    return `${date.toLocaleTimeString([], { hour12: false })}.${milliseconds}`;
  }

  function showEvent(event) {
    lastFailure = "";
    const item = element("li", "event");
    const meta = element("div", "meta");
    const time = element("time", "", timeOf(event.timestamp));
    time.dateTime = new Date(event.timestamp).toISOString();
    meta.append(time, element("span", "category", event.category), element("span", "id", event.id));
    item.append(meta, element("pre", "", JSON.stringify(event.data, null, 2)));
    showEntry(item);
    tailStatus();
  }

  function showGap() {
    showEntry(
      element(
        "li",
        "gap",
        "Events were missed here: the server dropped them before the tail could get them.",
      ),
    );
  }

  function startTail(position) {
    const options = {
      subscribeUrl: endpoints.subscribe,
      category: tailed.slice(),
      transport: "auto",
      token: token("subscribe"),
      onEvent: showEvent,
      onGap: showGap,
      onFailure: (message, status) => {
        lastFailure = `Failed: ${message}${status ? ` (${status})` : ""}.`;
        if (status === 401) askForToken("subscribe");
        tailStatus();
        return true;
      },
    };
    if (position) {
      options.sinceTime = position.sinceTime;
      options.lastId = position.lastId;
    } else if (byId("tail-from").value === "buffered") {
      options.sinceTime = -1;
    }
    lastFailure = "";
    try {
      client = longpoll.newClient(options);
    } catch (error) {
      lastFailure = error.message;
      client = null;
    }
    tailStatus();
  }

  function stopTail() {
    if (client === null) return null;
    const position = client.sinceTime === undefined ? null : client;
    client.stop();
    client = null;
    return position && { sinceTime: position.sinceTime, lastId: position.lastId };
  }

  // After a change of categories or token: on from where the tail was.
  function restartTail() {
    if (client === null) return;
    const position = stopTail();
    if (tailed.length) startTail(position);
    tailStatus();
  }

  function addTail(name) {
    if (name === "") return;
    if (!tailed.includes(name)) {
      tailed.push(name);
      showChips();
      restartTail();
    }
    if (client === null) startTail(null);
  }

  // --- publishing ------------------------------------------------------------------

  function publishError(message) {
    const error = byId("publish-error");
    error.textContent = message;
    error.hidden = message === "";
  }

  async function publish(submit) {
    submit.preventDefault();
    const result = byId("publish-result");
    const field = byId("publish-data");
    result.textContent = "";
    publishError("");
    field.removeAttribute("aria-invalid");
    const category = byId("publish-category").value;
    if (category === "") {
      publishError("Give a category.");
      byId("publish-category").focus();
      return;
    }
    let data;
    try {
      data = JSON.parse(field.value);
    } catch (error) {
      field.setAttribute("aria-invalid", "true");
      publishError(`The data is not valid JSON: ${error.message}`);
      field.focus();
      return;
    }
    if (data === null) {
      field.setAttribute("aria-invalid", "true");
      publishError("The data must not be null: the server refuses it.");
      return;
    }
    const send = byId("publish-send");
    send.disabled = true;
    try {
      const response = await fetch(endpoints.publish, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authorization("publish") },
        body: JSON.stringify({ category, data }),
        cache: "no-store",
      });
      const text = await response.text();
      if (response.ok) {
        const answer = JSON.parse(text);
        result.textContent = `Published at ${timeOf(answer.timestamp)}, id ${answer.id}.`;
      } else {
        publishError(`Not published: ${serverMessage(response.status, text)}.`);
        if (response.status === 401) askForToken("publish");
      }
    } catch (error) {
      publishError(`Not published: ${error.message}.`);
    } finally {
      send.disabled = false;
    }
  }

  // --- wiring ----------------------------------------------------------------------

  function start() {
    const store = storage();
    for (const name of TOKENS) {
      const input = byId(`token-${name}`);
      input.value = (store && store.getItem(STORAGE_PREFIX + name)) || "";
      input.addEventListener("change", () => {
        if (store) {
          const value = input.value.trim();
          if (value) store.setItem(STORAGE_PREFIX + name, value);
          else store.removeItem(STORAGE_PREFIX + name);
        }
        if (name === "operations") refresh();
        if (name === "subscribe") restartTail();
      });
    }

    // Enter in a token's field takes it (a change event), and reloads nothing.
    byId("tokens").addEventListener("submit", (submit) => submit.preventDefault());

    for (const name of ["stats", "metrics"]) {
      const link = byId(`link-${name}`);
      if (endpoints[name]) link.href = endpoints[name];
      else link.hidden = true;
    }

    byId("refresh").addEventListener("click", refresh);
    byId("auto-refresh").addEventListener("change", refresh);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) refresh();
    });
    byId("category-rows").addEventListener("click", (click) => {
      const button = click.target.closest("button[data-category]");
      if (button) addTail(button.dataset.category);
    });

    byId("tail-form").addEventListener("submit", (submit) => {
      submit.preventDefault();
      const input = byId("tail-category");
      addTail(input.value);
      input.value = "";
    });
    byId("tail-categories").addEventListener("click", (click) => {
      const button = click.target.closest("button[data-category]");
      if (!button) return;
      tailed.splice(tailed.indexOf(button.dataset.category), 1);
      showChips();
      if (tailed.length) restartTail();
      else stopTail();
      tailStatus();
    });
    byId("tail-toggle").addEventListener("click", () => {
      if (client === null) startTail(null);
      else stopTail();
      tailStatus();
    });
    byId("tail-clear").addEventListener("click", () => byId("tail-events").replaceChildren());

    if (endpoints.publish) {
      byId("publish-form").addEventListener("submit", publish);
      byId("publish-data").addEventListener("input", () => {
        byId("publish-data").removeAttribute("aria-invalid");
        publishError("");
      });
    } else {
      byId("publish-form").hidden = true;
      byId("publish-off").hidden = false;
    }

    tailStatus();
    refresh();
    document.documentElement.dataset.ready = "true";
  }

  start();
})();
