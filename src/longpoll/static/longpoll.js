/*
 * longpoll.js: the browser client of longpoll (HTTP long-poll publish/subscribe).
 * Plain modern JavaScript: no build step, no dependencies. It speaks golongpoll's
 * wire protocol, and newClient() takes the options of golongpoll's browser client
 * under the same names, so a page written for that client works unchanged.
 *
 * Two ways to load it:
 *
 *   <script src="/longpoll.js"></script>           a classic script: defines the global
 *                                                  `longpoll` (and `golongpoll` if free)
 *   import { newClient } from "/longpoll.js";      an ES module
 *
 * One file cannot be both: a classic script may not contain `export`, and a module
 * must, to export anything. This file is the classic script; the server makes the
 * module form by appending one `export` statement to it. It serves that form at
 * /longpoll.mjs always, and at /longpoll.js when the browser says it is loading a
 * module script (`Sec-Fetch-Mode: cors` with `Sec-Fetch-Dest: script`; module
 * scripts are fetched in CORS mode, classic ones in no-cors mode), with
 * `Vary: Sec-Fetch-Mode, Sec-Fetch-Dest` so caches keep the two apart. Browsers send
 * Sec-Fetch-* headers to https and localhost origins only: on a plain-http origin
 * elsewhere, import from "/longpoll.mjs".
 *
 *   const client = longpoll.newClient({
 *     subscribeUrl: "/events",
 *     publishUrl: "/publish",
 *     category: ["news", "weather"],        // one category or several
 *     onEvent: (event) => console.log(event.category, event.data),
 *   });
 *   await client.publish("news", { title: "hello" });
 *   client.stop();
 *
 * Credentials go with every request, poll and publish alike: basicAuthUsername and
 * basicAuthPassword (HTTP basic authentication), extraRequestHeaders ([{key, value}]),
 * or `token`, sent as `Authorization: Bearer <token>`. `token` is a string, or a
 * function returning the current token (a string, or a Promise of one), called
 * before each request; it should cache the token and renew it shortly before it
 * expires, for instance by fetching a new one from your server. When the server
 * answers 401 to a function's token, the request is sent once more at once with the
 * function's next token; a 401 after that, a 401 to a string token and any 403 go
 * to onFailure (or reject the publish) like any other failure, as does a function
 * that throws or returns something that is not a token. `token` cannot be combined
 * with basic authentication or an Authorization header in extraRequestHeaders.
 *
 *   token: async () => (await fetch("/my-token")).text(),
 *
 * A publish is stored once, even when it has to be sent again. publish() gives the
 * event a random UUID (`"id"` in the body: crypto.randomUUID, or one made from
 * crypto.getRandomValues where that is missing) and, when it cannot know that the
 * server stored the event, sends it again under the same id: after no answer (a
 * network error, or none within publishTimeoutSeconds), 408, 429, 502, 503 or 504.
 * The server stores an id it has already buffered in that category no second time
 * and answers `repeat: true` with the first event's id and timestamp, so the Promise
 * resolves once the event is stored, once. It rejects with a LongpollError when the
 * server refuses the publish (any other status, with the server's message as the
 * error's message) or when the attempts run out ("publish failed after 5 attempts: "
 * and the last failure with its status, such as "redis is unavailable (503)"); the
 * error's `status`, `eventId`, `attempts` and `code` (the server's, if it gave one)
 * say more. An answer that is not the server's JSON (a proxy's HTML page) becomes one
 * line naming its status and likely cause: "the proxy in front timed out waiting for
 * the server (504)". The options, with their defaults:
 *
 *   publishAttempts: 5               requests at most per publish (1: never sent again)
 *   publishTimeoutSeconds: 10        how long each request waits for its answer
 *   publishRetryWaitSeconds: 0.5     the wait before the second request, doubled
 *   maxPublishRetryWaitSeconds: 8    before each next one up to this, each wait cut
 *                                    by a random 0 to 50%; a Retry-After header
 *                                    (429, 503) makes the wait at least what it
 *                                    asks, and ends the publish if it asks more
 *
 * golongpoll's server ignores the "id" key, so the client still publishes there, but
 * stores a publish once per request: a request sent again may be stored twice.
 *
 * `transport` says how events come: "longpoll" (the default, golongpoll's way: one
 * request per batch of events), "sse" (one Server-Sent Events stream that stays open,
 * read with fetch so that it carries the same headers and token as a poll), or
 * "auto" (a stream where the browser can read one and it gets through, long polling
 * otherwise). Whichever way, the client resumes from the last event it delivered
 * (client.sinceTime, client.lastId), so a switch or a reconnection neither skips nor
 * repeats an event while the server buffers that position. With "auto", a stream that
 * fails to open is followed at once by a poll: if the poll gets through, the client
 * long-polls and tries a stream again after five minutes; if not, the failure is
 * reported and the next attempt is a stream. A stream that was open and ends (the
 * server shut down, the connection broke, or nothing came for pollTimeoutSeconds +
 * 15 s) is reopened after the server's `retry` time without a call to onFailure;
 * a stream that cannot be opened is a failure like a failed poll.
 */
var longpoll = (function () {
  "use strict";

  // Seconds to wait for an answer beyond the poll's own timeout before giving up on it;
  // also how long a stream may take to send its first bytes.
  const ANSWER_MARGIN_SECONDS = 15;
  const MAX_CATEGORY_BYTES = 1024;
  const TRANSPORTS = ["longpoll", "sse", "auto"];
  // Before a stream that ended is reopened, until the server says (`retry:`).
  const STREAM_RETRY_SECONDS = 2;
  // With transport "auto", how long to long-poll after a stream failed before trying one again.
  const STREAM_RECHECK_SECONDS = 300;

  const DEFAULTS = {
    subscribeUrl: undefined,
    publishUrl: undefined,
    category: undefined,
    sinceTime: undefined,
    lastId: undefined,
    onEvent: function () {},
    onFailure: function () { return true; },
    onGap: undefined,
    pollTimeoutSeconds: 45,
    reattemptWaitSeconds: 1,
    maxReattemptWaitSeconds: 30,
    successWaitSeconds: 0,
    sucessWaitSeconds: undefined, // golongpoll's spelling of successWaitSeconds
    basicAuthUsername: "",
    basicAuthPassword: "",
    token: undefined,
    extraRequestHeaders: [],
    loggingEnabled: false,
    transport: "longpoll",
    publishAttempts: 5,
    publishRetryWaitSeconds: 0.5,
    maxPublishRetryWaitSeconds: 8,
    publishTimeoutSeconds: 10,
  };

  // Statuses after which a publish is sent again under the same event id: the server,
  // or a proxy in front, was unavailable (503; also when the server's store lost its
  // answer, "publish_unconfirmed"), got no valid answer from it (502), timed out (504,
  // 408) or asks to slow down (429).
  const RETRIED_PUBLISH_STATUSES = [408, 429, 502, 503, 504];

  /** A failed request: `status` is the HTTP status (0 when there was no answer). */
  class LongpollError extends Error {
    constructor(message, status, body) {
      super(message);
      this.name = "LongpollError";
      this.status = status;
      this.body = body;
    }
  }

  function optionError(option, problem) {
    const error = new TypeError(`longpoll: option '${option}' ${problem}`);
    error.option = option;
    return error;
  }

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  // A bearer token as it may go in a header: visible ASCII characters, no space.
  function isToken(value) {
    return typeof value === "string" && /^[\x21-\x7e]+$/.test(value);
  }
  const TOKEN_RULE =
    'must be a non-empty string of visible ASCII characters, the token alone (no "Bearer ")';

  function utf8Length(text) {
    return new TextEncoder().encode(text).length;
  }

  function categoryProblem(category) {
    if (typeof category !== "string" || category.length === 0) {
      return "must be a non-empty string";
    }
    if (utf8Length(category) > MAX_CATEGORY_BYTES) {
      return `must be at most ${MAX_CATEGORY_BYTES} bytes of UTF-8`;
    }
    return null;
  }

  function baseUrl() {
    return globalThis.document ? document.baseURI : globalThis.location && location.href;
  }

  function checkUrl(option, value, required) {
    if (value === undefined || value === null || value === "") {
      if (required) throw optionError(option, "is required");
      return null;
    }
    if (typeof value !== "string" && !(value instanceof URL)) {
      throw optionError(option, "must be a URL string");
    }
    try {
      return new URL(value, baseUrl()).href;
    } catch (error) {
      throw optionError(option, `is not a valid URL: ${value}`);
    }
  }

  function checkOptions(options) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("longpoll: newClient() takes an object of options");
    }
    for (const name of Object.keys(options)) {
      if (!Object.prototype.hasOwnProperty.call(DEFAULTS, name)) {
        throw optionError(name, "is not a known option");
      }
    }
    const given = (name) => options[name] !== undefined;
    const config = {};
    for (const name of Object.keys(DEFAULTS)) {
      config[name] = given(name) ? options[name] : DEFAULTS[name];
    }
    // A maximum wait not given is at least its first wait; a given one must be.
    const checkMaximumWait = (maximum, first) => {
      if (!given(maximum)) {
        config[maximum] = Math.max(DEFAULTS[maximum], config[first]);
      }
      if (!isNumber(config[maximum]) || config[maximum] < config[first]) {
        throw optionError(maximum, `must be a number, at least ${first}`);
      }
    };

    config.subscribeUrl = checkUrl("subscribeUrl", config.subscribeUrl, true);
    config.publishUrl = checkUrl("publishUrl", config.publishUrl, false);

    const categories = Array.isArray(config.category) ? config.category : [config.category];
    if (config.category === undefined || categories.length === 0) {
      throw optionError("category", "is required: a string, or an array of strings");
    }
    for (const category of categories) {
      const problem = categoryProblem(category);
      if (problem) throw optionError("category", problem);
    }
    config.categories = categories.slice();

    if (config.sinceTime === null) config.sinceTime = undefined;
    if (config.sinceTime instanceof Date) config.sinceTime = config.sinceTime.getTime();
    if (config.sinceTime !== undefined && !Number.isSafeInteger(config.sinceTime)) {
      throw optionError("sinceTime", "must be an integer of epoch milliseconds (or a Date)");
    }
    if (config.lastId === null || config.lastId === "") config.lastId = undefined;
    if (config.lastId !== undefined) {
      if (typeof config.lastId !== "string") throw optionError("lastId", "must be a string");
      if (config.sinceTime === undefined) throw optionError("lastId", "needs sinceTime");
    }

    for (const name of ["onEvent", "onFailure", "onGap"]) {
      if (config[name] !== undefined && typeof config[name] !== "function") {
        throw optionError(name, "must be a function");
      }
    }

    if (!Number.isSafeInteger(config.pollTimeoutSeconds) || config.pollTimeoutSeconds < 1) {
      throw optionError("pollTimeoutSeconds", "must be a whole number of seconds, at least 1");
    }
    if (!isNumber(config.reattemptWaitSeconds) || config.reattemptWaitSeconds <= 0) {
      throw optionError("reattemptWaitSeconds", "must be a number of seconds above 0");
    }
    checkMaximumWait("maxReattemptWaitSeconds", "reattemptWaitSeconds");
    if (given("sucessWaitSeconds")) {
      if (given("successWaitSeconds") && options.successWaitSeconds !== options.sucessWaitSeconds) {
        throw optionError("sucessWaitSeconds", "contradicts successWaitSeconds (give one of them)");
      }
      config.successWaitSeconds = config.sucessWaitSeconds;
    }
    delete config.sucessWaitSeconds;
    if (!isNumber(config.successWaitSeconds) || config.successWaitSeconds < 0) {
      throw optionError("successWaitSeconds", "must be a number of seconds, at least 0");
    }

    for (const name of ["basicAuthUsername", "basicAuthPassword"]) {
      if (config[name] === null) config[name] = "";
      if (typeof config[name] !== "string") throw optionError(name, "must be a string");
    }
    if ((config.basicAuthUsername === "") !== (config.basicAuthPassword === "")) {
      const missing = config.basicAuthUsername === "" ? "basicAuthUsername" : "basicAuthPassword";
      throw optionError(missing, "is needed too: give both basicAuthUsername and basicAuthPassword");
    }

    if (!Array.isArray(config.extraRequestHeaders)) {
      throw optionError("extraRequestHeaders", "must be an array of {key, value} objects");
    }
    for (const header of config.extraRequestHeaders) {
      const valid =
        header !== null &&
        typeof header === "object" &&
        typeof header.key === "string" &&
        typeof header.value === "string";
      if (!valid) throw optionError("extraRequestHeaders", "must be an array of {key, value} objects");
      try {
        new Headers([[header.key, header.value]]);
      } catch (error) {
        throw optionError("extraRequestHeaders", `has a header that cannot be sent: ${header.key}`);
      }
    }
    config.extraRequestHeaders = config.extraRequestHeaders.map(({ key, value }) => ({ key, value }));

    if (config.token === null) config.token = undefined;
    if (config.token !== undefined) {
      if (typeof config.token !== "function" && !isToken(config.token)) {
        throw optionError("token", `${TOKEN_RULE}, or a function returning one`);
      }
      if (config.basicAuthUsername !== "") {
        throw optionError("token", "cannot be combined with basic authentication: give one");
      }
      if (config.extraRequestHeaders.some(({ key }) => key.toLowerCase() === "authorization")) {
        throw optionError("token", "cannot be combined with an Authorization extraRequestHeader");
      }
    }

    if (!Number.isSafeInteger(config.publishAttempts) || config.publishAttempts < 1) {
      throw optionError("publishAttempts", "must be a whole number, at least 1");
    }
    for (const name of ["publishRetryWaitSeconds", "publishTimeoutSeconds"]) {
      if (!isNumber(config[name]) || config[name] <= 0) {
        throw optionError(name, "must be a number of seconds above 0");
      }
    }
    checkMaximumWait("maxPublishRetryWaitSeconds", "publishRetryWaitSeconds");

    if (typeof config.loggingEnabled !== "boolean") {
      throw optionError("loggingEnabled", "must be true or false");
    }
    if (!TRANSPORTS.includes(config.transport)) {
      throw optionError("transport", `must be one of ${TRANSPORTS.map((t) => `"${t}"`).join(", ")}`);
    }
    if (config.transport === "sse" && !canStream()) {
      throw optionError("transport", '"sse" needs fetch with readable streams: use "auto"');
    }
    return config;
  }

  // True if this browser can read a response as it arrives (what a stream needs).
  function canStream() {
    return (
      typeof ReadableStream === "function" &&
      typeof TextDecoder === "function" &&
      typeof AbortController === "function"
    );
  }

  // The position an event id of a stream names: "<timestamp>:<event id>", or
  // "<timestamp>" alone (a point to resume from); null if it is neither.
  function streamPosition(text) {
    const [timestamp, id] = text.split(":", 2);
    if (!/^-?\d{1,19}$/.test(timestamp) || !Number.isSafeInteger(Number(timestamp))) return null;
    return { sinceTime: Number(timestamp), lastId: id || undefined };
  }

  // Reads the text/event-stream format: `onBlock({id, event, data})` for each block
  // (data undefined when the block had none), `onRetry(milliseconds)` for a retry field.
  class StreamParser {
    constructor(onBlock, onRetry) {
      this.onBlock = onBlock;
      this.onRetry = onRetry;
      this.decoder = new TextDecoder(); // drops a leading byte order mark
      this.rest = "";
      this.block = {};
    }

    push(bytes) {
      const text = this.rest + this.decoder.decode(bytes, { stream: true });
      const ends = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = ends.exec(text)) !== null) {
        // A CR that ends the chunk may be the first half of a CRLF.
        if (match[0] === "\r" && match.index === text.length - 1) break;
        this._line(text.slice(start, match.index));
        start = ends.lastIndex;
      }
      this.rest = text.slice(start);
    }

    _line(line) {
      if (line === "") {
        const block = this.block;
        this.block = {};
        if (block.data !== undefined || block.id !== undefined) this.onBlock(block);
        return;
      }
      if (line[0] === ":") return; // a comment: the server's keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      const block = this.block;
      if (field === "data") {
        block.data = block.data === undefined ? value : `${block.data}\n${value}`;
      } else if (field === "event") {
        block.event = value;
      } else if (field === "id" && !value.includes("\0")) {
        block.id = value;
      } else if (field === "retry" && /^\d{1,9}$/.test(value)) {
        this.onRetry(Number(value));
      }
    }
  }

  function basicAuthorization(username, password) {
    const bytes = new TextEncoder().encode(`${username}:${password}`);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return "Basic " + btoa(binary);
  }

  // Reports an exception thrown by a callback without stopping the client.
  function report(error) {
    if (typeof globalThis.reportError === "function") {
      globalThis.reportError(error);
    } else {
      console.error(error);
    }
  }

  // The server's own message in an error answer (`{"error": ...}`), or null.
  function serverMessage(text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") return body.error;
    } catch (error) {
      // not JSON
    }
    return null;
  }

  // What an answer without the server's message most likely means, in one line: such
  // answers (an HTML page, say) mostly come from a proxy in front of the server.
  const STATUS_CAUSES = {
    400: "the request was refused as malformed",
    401: "the request was not authorized",
    403: "the request was forbidden",
    404: "nothing is served at this URL",
    405: "this URL does not take this method",
    408: "the server or a proxy in front timed out reading the request",
    413: "the request is larger than the server or a proxy in front accepts",
    429: "too many requests",
    500: "the server failed",
    502: "the proxy in front got no valid answer from the server",
    503: "the server or the proxy in front is unavailable",
    504: "the proxy in front timed out waiting for the server",
  };

  function statusCause(status) {
    return `${STATUS_CAUSES[status] || "the answer is not the server's"} (${status})`;
  }

  // The server's own message from an error answer, or a description of the answer.
  function failureMessage(what, status, text) {
    return serverMessage(text) ?? `${what} failed: ${statusCause(status)}`;
  }

  // A version 4 (random) UUID: the id a publish gives its event.
  function newEventId() {
    const crypto = globalThis.crypto;
    if (typeof crypto.randomUUID === "function") return crypto.randomUUID(); // secure contexts
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // the RFC 4122 variant
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)]
      .join("-");
  }

  // The seconds a Retry-After header asks to wait (a number of seconds, or a date);
  // null when there is none, or it cannot be read.
  function retryAfterSeconds(value) {
    if (value === null) return null;
    const text = value.trim();
    if (/^\d{1,9}$/.test(text)) return Number(text);
    const when = Date.parse(text);
    return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
  }

  function sleep(seconds) {
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  class Client {
    constructor(config) {
      Object.assign(this, config);
      this.running = true;
      this._controller = null;
      this._wake = null;
      // Whether the next attempt opens a stream, rather than a poll.
      this._streaming = config.transport === "sse" || (config.transport === "auto" && canStream());
      this._streamFailed = false; // "auto": a stream just failed to open; a poll tells why
      this._pollingSince = undefined; // "auto": since when it long-polls as streams failed
      this._streamRetrySeconds = STREAM_RETRY_SECONDS;
    }

    /** How events come now: "sse" or "longpoll" (with transport "auto", it may change). */
    get activeTransport() {
      return this._streaming ? "sse" : "longpoll";
    }

    /** Stop polling: the request in flight is aborted at once, and no callback follows. */
    stop() {
      if (!this.running) return;
      this.log("stopping");
      this.running = false;
      if (this._controller) this._controller.abort();
      if (this._wake) this._wake();
    }

    log(message) {
      if (this.loggingEnabled) {
        console.log(`longpoll client[${this.categories.join(", ")}]: ${message}`);
      }
    }

    /**
     * Publish `data` (any JSON value but null) on `category`. Returns a Promise of
     * the server's answer ({success, id, timestamp, repeat}) that rejects with a
     * LongpollError. golongpoll's callbacks work too: onSuccess(answer) and
     * onFail(status, responseText, error), status 0 when there was no answer.
     *
     * The event gets its id here, and a publish that may not have arrived (no answer,
     * a timeout, 408, 429, 502, 503 or 504) is sent again under the same id: the
     * server stores the event once, and answers `repeat: true` when it had it already.
     * See the publish options above.
     */
    publish(category, data, onSuccess, onFail) {
      if (!this.publishUrl) {
        throw optionError("publishUrl", "is required to publish");
      }
      const problem = categoryProblem(category);
      if (problem) throw new TypeError(`longpoll: publish(): category ${problem}`);
      if (data === undefined || data === null) {
        throw new TypeError("longpoll: publish(): data must not be null or undefined");
      }
      for (const [name, callback] of [["onSuccess", onSuccess], ["onFail", onFail]]) {
        if (callback !== undefined && callback !== null && typeof callback !== "function") {
          throw new TypeError(`longpoll: publish(): ${name} must be a function`);
        }
      }
      const id = newEventId();
      const body = JSON.stringify({ category: category, data: data, id: id });
      const sent = this._publish(body, id);
      if (onSuccess || onFail) {
        // A rejection is handled only when onFail is given; otherwise it stays visible.
        sent.then(
          onSuccess ? (answer) => onSuccess(answer) : undefined,
          onFail ? (error) => onFail(error.status, error.body, error) : undefined,
        );
      }
      return sent;
    }

    // Sends a publish until it is answered, publishAttempts times at most; `body`
    // names the event `id`, so that the server stores it once however often it comes.
    async _publish(body, id) {
      for (let attempt = 1; ; attempt++) {
        const outcome = await this._publishOnce(body);
        if (outcome.answer) {
          outcome.answer.repeat = outcome.answer.repeat === true;
          if (attempt > 1) this.log(`publish ${id} done at attempt ${attempt}`);
          return outcome.answer;
        }
        const error = outcome.error;
        error.eventId = id;
        error.attempts = attempt;
        let message = null;
        if (!outcome.retry) {
          message = outcome.reason; // as before retries: the server's message alone
        } else if (attempt >= this.publishAttempts) {
          const times = attempt === 1 ? "1 attempt" : `${attempt} attempts`;
          message = `publish failed after ${times}: ${outcome.reason}`;
        }
        let wait = this._publishRetryWait(attempt);
        if (message === null && outcome.retryAfter !== null) {
          if (outcome.retryAfter > this.maxPublishRetryWaitSeconds) {
            message =
              `publish failed: ${outcome.reason}; the server asks to wait ` +
              `${Math.ceil(outcome.retryAfter)} s, more than maxPublishRetryWaitSeconds`;
          }
          wait = Math.max(wait, outcome.retryAfter);
        }
        if (message !== null) {
          error.message = message;
          this.log(message);
          throw error;
        }
        this.log(`publish ${id}: ${outcome.reason}: sending it again in ${wait.toFixed(2)} s`);
        await sleep(wait);
      }
    }

    // Waits before publish attempt `attempt + 1`: doubling from publishRetryWaitSeconds
    // up to maxPublishRetryWaitSeconds, each cut by a random 0 to 50%.
    _publishRetryWait(attempt) {
      const doubled = this.publishRetryWaitSeconds * 2 ** Math.min(attempt - 1, 30);
      return Math.min(doubled, this.maxPublishRetryWaitSeconds) * (1 - Math.random() * 0.5);
    }

    // One publish request: {answer} on success, else {error, reason, retry, retryAfter},
    // `reason` saying what went wrong in one line and `retry` whether sending the
    // same publish again may succeed.
    async _publishOnce(body) {
      const controller = new AbortController();
      let late = false;
      const deadline = setTimeout(() => {
        late = true;
        controller.abort();
      }, this.publishTimeoutSeconds * 1000);
      let response;
      let text;
      try {
        const request = { method: "POST", body, cache: "no-store", signal: controller.signal };
        [response, text] = await this._send(this.publishUrl, request, "application/json");
      } catch (error) {
        if (error instanceof LongpollError) {
          return { error, reason: error.message, retry: false, retryAfter: null };
        }
        // No answer: the publish may or may not have arrived.
        const reason = late
          ? `no answer within ${this.publishTimeoutSeconds} s`
          : `no answer (${error.message})`;
        const failure = new LongpollError(`publish failed: ${reason}`, 0, "");
        return { error: failure, reason, retry: true, retryAfter: null };
      } finally {
        clearTimeout(deadline);
      }
      let answer = null;
      try {
        answer = JSON.parse(text);
      } catch (error) {
        // handled below
      }
      if (response.ok && answer && answer.success === true) {
        return { answer };
      }
      const status = response.status;
      const retry = RETRIED_PUBLISH_STATUSES.includes(status);
      const fromServer = serverMessage(text);
      const error = new LongpollError(failureMessage("publish", status, text), status, text);
      if (answer && typeof answer.code === "string") error.code = answer.code;
      // A publish given up on names the status after the server's message; a refusal
      // keeps the server's message alone, as golongpoll's pages may expect.
      const reason = fromServer === null ? statusCause(status) : `${fromServer} (${status})`;
      return {
        error,
        reason: retry ? reason : error.message,
        retry,
        retryAfter: retry ? retryAfterSeconds(response.headers.get("Retry-After")) : null,
      };
    }

    // The headers of a request; `token` is the bearer token for it, if any.
    _headers(token) {
      const headers = new Headers();
      if (this.basicAuthUsername) {
        headers.set("Authorization", basicAuthorization(this.basicAuthUsername, this.basicAuthPassword));
      }
      if (token !== undefined) headers.set("Authorization", `Bearer ${token}`);
      for (const { key, value } of this.extraRequestHeaders) {
        headers.set(key, value);
      }
      return headers;
    }

    // The bearer token for the next request: the option itself, or what its function
    // gives now. A function that throws or gives no token is a failure (status 0).
    async _token() {
      if (typeof this.token !== "function") return this.token;
      let token;
      try {
        token = await this.token();
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new LongpollError(`the token function failed: ${reason}`, 0, "");
      }
      if (!isToken(token)) {
        throw new LongpollError(`the token function's token ${TOKEN_RULE}`, 0, "");
      }
      return token;
    }

    // Sends a request with our headers (`contentType` too, if given) and reads the
    // answer: [response, text]. A 401 to a token function's token is sent once more
    // at once, with the function's next token. Throws a LongpollError when the token
    // function fails, else what fetch throws.
    async _send(url, request, contentType) {
      for (let attempt = 1; ; attempt++) {
        const headers = this._headers(await this._token());
        if (contentType) headers.set("Content-Type", contentType);
        const response = await fetch(url, { ...request, headers });
        const text = await response.text();
        if (response.status !== 401 || typeof this.token !== "function" || attempt === 2) {
          return [response, text];
        }
        this.log("the server refused the token (401): trying once more with a fresh one");
      }
    }

    // The subscribe URL from the client's position: a poll's with `timeout`, else a stream's.
    _pollUrl(timeout = true) {
      const url = new URL(this.subscribeUrl);
      for (const category of this.categories) url.searchParams.append("category", category);
      if (timeout) url.searchParams.set("timeout", String(this.pollTimeoutSeconds));
      if (this.sinceTime !== undefined) {
        url.searchParams.set("since_time", String(this.sinceTime));
        if (this.lastId !== undefined) url.searchParams.set("last_id", this.lastId);
      }
      return url.href;
    }

    _sleep(seconds) {
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this._wake = null;
          resolve();
        };
        const timer = setTimeout(done, seconds * 1000);
        this._wake = done;
      });
    }

    // Waits after `failures` failures in a row: doubling from reattemptWaitSeconds up
    // to maxReattemptWaitSeconds, each cut by a random 0 to 50% so that the clients
    // of a restarted server do not all come back at the same moment.
    _reattemptWait(failures) {
      const doubled = this.reattemptWaitSeconds * 2 ** Math.min(failures - 1, 30);
      return Math.min(doubled, this.maxReattemptWaitSeconds) * (1 - Math.random() * 0.5);
    }

    async _run() {
      let failures = 0;
      while (this.running) {
        const streaming = this._streaming;
        let outcome;
        try {
          outcome = streaming ? await this._stream() : await this._poll();
        } catch (error) {
          if (!this.running) return;
          if (!(error instanceof LongpollError)) throw error;
          if (streaming && this.transport === "auto") {
            // A poll may get through where a stream does not (a proxy holding streams
            // back, a server without them): one goes at once, from the same position.
            this.log(`stream failed: ${error.message}: long polling`);
            this._streaming = false;
            this._streamFailed = true;
            continue;
          }
          if (this._streamFailed) {
            // Polls fail too: the stream was not at fault, so the next attempt is one.
            this._streamFailed = false;
            this._streaming = true;
          }
          failures += 1;
          this.log(`${streaming ? "stream" : "poll"} failed: ${error.message}`);
          let again = true;
          try {
            again = this.onFailure(error.message, error.status);
          } catch (thrown) {
            report(thrown);
          }
          if (!this.running) return;
          if (!again) {
            // As golongpoll: any false-like answer stops the client.
            this.log("onFailure returned false: stopping");
            this.running = false;
            return;
          }
          await this._sleep(this._reattemptWait(failures));
          continue;
        }
        failures = 0;
        if (!streaming && this.transport === "auto") this._polled();
        if (outcome === "events" && this.successWaitSeconds > 0 && this.running) {
          await this._sleep(this.successWaitSeconds);
        } else if (outcome === "ended" && this.running) {
          await this._sleep(this._streamRetrySeconds);
        }
      }
    }

    // With transport "auto", after a poll that got through: stay with polls after a
    // stream failed, and try a stream again once they have served long enough.
    _polled() {
      if (this._streamFailed) {
        this._streamFailed = false;
        this._pollingSince = Date.now();
        this.log("streams do not get through: long polling");
      } else if (
        this._pollingSince !== undefined &&
        Date.now() - this._pollingSince >= STREAM_RECHECK_SECONDS * 1000
      ) {
        this._pollingSince = undefined;
        this._streaming = true;
      }
    }

    // One poll: delivers what it brings and returns "events", "timeout" or "stopped",
    // or throws a LongpollError.
    async _poll() {
      const controller = new AbortController();
      let late = false;
      const deadline = setTimeout(() => {
        late = true;
        controller.abort();
      }, (this.pollTimeoutSeconds + ANSWER_MARGIN_SECONDS) * 1000);
      this._controller = controller;
      let response;
      let text;
      try {
        const request = { signal: controller.signal, cache: "no-store" };
        [response, text] = await this._send(this._pollUrl(), request);
      } catch (error) {
        if (!this.running) return "stopped";
        if (error instanceof LongpollError) throw error;
        const reason = late ? "no answer before the poll timeout" : error.message;
        throw new LongpollError(`request failed: ${reason}`, 0, "");
      } finally {
        clearTimeout(deadline);
        this._controller = null;
      }
      if (!this.running) return "stopped";

      let answer = null;
      try {
        answer = JSON.parse(text);
      } catch (error) {
        // handled below
      }
      const ok = response.status === 200 && answer !== null && typeof answer === "object";
      if (ok && Array.isArray(answer.events) && answer.events.length > 0) {
        this._gap(answer);
        for (const event of answer.events) {
          this._deliver(event);
          if (!this.running) return "stopped";
        }
        return "events";
      }
      if (ok && answer.timeout !== undefined) {
        this._gap(answer);
        // Nothing published after the answer was made is older than its timestamp.
        if (Number.isSafeInteger(answer.timestamp)) {
          this.sinceTime = answer.timestamp;
          this.lastId = undefined;
        }
        this.log("no events before the timeout: polling again");
        return "timeout";
      }
      if (response.status === 200 && !(answer && typeof answer.error === "string")) {
        throw new LongpollError(`unexpected response: ${text.slice(0, 200)}`, 200, text);
      }
      throw new LongpollError(failureMessage("request", response.status, text), response.status, text);
    }

    // Opens a stream (a 401 to a token function's token is sent once more, as in _send)
    // and checks its answer; throws a LongpollError if it is not a stream.
    async _openStream(signal) {
      for (let attempt = 1; ; attempt++) {
        const headers = this._headers(await this._token());
        headers.set("Accept", "text/event-stream");
        const request = { headers, signal, cache: "no-store" };
        const response = await fetch(this._pollUrl(false), request);
        const type = response.headers.get("Content-Type") || "";
        if (response.status === 200 && type.startsWith("text/event-stream") && response.body) {
          return response;
        }
        const text = await response.text();
        if (response.status === 401 && typeof this.token === "function" && attempt === 1) {
          this.log("the server refused the token (401): trying once more with a fresh one");
          continue;
        }
        if (response.status === 200) {
          const message = `the server does not stream events (it answered ${type || "no type"})`;
          throw new LongpollError(message, 200, text);
        }
        throw new LongpollError(failureMessage("stream", response.status, text), response.status, text);
      }
    }

    // One stream: delivers its events until it ends. Returns "ended" once a stream that
    // sent something ends, or "stopped"; throws a LongpollError if it could not be
    // opened (nothing came within ANSWER_MARGIN_SECONDS counts) or sent a bad event.
    async _stream() {
      const controller = new AbortController();
      let silent = false;
      let timer;
      const silenceLimit = (seconds) => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          silent = true;
          controller.abort();
        }, seconds * 1000);
      };
      silenceLimit(ANSWER_MARGIN_SECONDS);
      this._controller = controller;
      let opened = false;
      const parser = new StreamParser(
        (block) => this._streamBlock(block),
        (milliseconds) => {
          this._streamRetrySeconds = Math.min(milliseconds / 1000, this.maxReattemptWaitSeconds);
        },
      );
      try {
        const response = await this._openStream(controller.signal);
        const reader = response.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (!this.running) return "stopped";
          if (done) break;
          if (!opened) this.log("stream open");
          opened = true;
          silenceLimit(this.pollTimeoutSeconds + ANSWER_MARGIN_SECONDS);
          parser.push(value);
          if (!this.running) return "stopped";
        }
      } catch (error) {
        if (!this.running) return "stopped";
        if (error instanceof LongpollError) throw error;
        const reason = silent ? "the stream sent nothing in time" : error.message;
        if (!opened) throw new LongpollError(`request failed: ${reason}`, 0, "");
        this.log(`stream lost: ${reason}`);
        return "ended";
      } finally {
        clearTimeout(timer);
        this._controller = null;
        if (!controller.signal.aborted) controller.abort(); // lets the connection go
      }
      if (!opened) throw new LongpollError("request failed: the stream ended at once", 0, "");
      this.log("stream ended");
      return "ended";
    }

    // One block of a stream: an event, the gap signal, or a position to resume from.
    _streamBlock(block) {
      if (!this.running) return;
      if (block.data === undefined) {
        const position = streamPosition(block.id);
        if (position) {
          this.sinceTime = position.sinceTime;
          this.lastId = position.lastId;
        }
        return;
      }
      let event = null;
      try {
        event = JSON.parse(block.data);
      } catch (error) {
        // handled below
      }
      const isObject = event !== null && typeof event === "object";
      if (block.event === "missed" && isObject && event.missed === true && !("category" in event)) {
        this._gap(event);
        return;
      }
      if (!isObject || !Number.isSafeInteger(event.timestamp) || typeof event.id !== "string") {
        const text = block.data.slice(0, 200);
        throw new LongpollError(`unexpected event in the stream: ${text}`, 200, block.data);
      }
      this._deliver(event);
    }

    // Hand an event to onEvent, whichever transport brought it. The position moves
    // first: the next poll or stream resumes after it, with no gap or duplicate.
    _deliver(event) {
      this.sinceTime = event.timestamp;
      this.lastId = event.id;
      try {
        this.onEvent(event);
      } catch (error) {
        report(error);
      }
    }

    // The server dropped events after our position before we could get them.
    _gap(answer) {
      if (answer.missed !== true) return;
      this.log("events were missed: the position fell out of the server's buffer");
      if (this.onGap) {
        try {
          this.onGap({ sinceTime: this.sinceTime, lastId: this.lastId });
        } catch (error) {
          report(error);
        }
      }
    }
  }

  /**
   * Start a client that long-polls `subscribeUrl` for the events of `category` (a
   * string or an array of strings) and calls onEvent(event) for each, oldest first.
   * Throws a TypeError naming the option when an option is invalid.
   */
  function newClient(options) {
    const client = new Client(checkOptions(options));
    client._run().catch(report);
    return client;
  }

  return Object.freeze({ newClient: newClient, LongpollError: LongpollError });
})();

// A classic script's top-level `this` is the global object, a module's is undefined:
// only the classic form offers the golongpoll name, and only when it is free.
if (this !== undefined && typeof globalThis.golongpoll === "undefined") {
  globalThis.golongpoll = longpoll;
}
