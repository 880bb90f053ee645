// The live page of `moa serve`: it asks POST /live and shows the events it reads.
// Every number shown is the server's (a call's record, the answer's accounting);
// text is set as text, never as HTML: answers are the models' words, not markup.
"use strict";

const AGGREGATOR = "aggregator";
const CALL_START = "moa_call_start";
const CALL_END = "moa_call_end";
const CALL_ERROR = "moa_call_error";
const ANSWER_CHUNK = "moa_answer_chunk";
const ANSWER = "moa_answer";
const ERROR = "moa_error";

const page = {
  conversation: [],
  key: null,
  // The AbortController of the question being answered, if one is.
  running: null,
};

const $ = (selector, root = document) => root.querySelector(selector);

function headers() {
  const sent = { "Content-Type": "application/json" };
  if (page.key) sent.Authorization = `Bearer ${page.key}`;
  return sent;
}

function say(message) {
  $("#status").textContent = message;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error.message;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function askForKey(message) {
  $("#key-field").hidden = false;
  say(`${message} Enter the server's API key.`);
  $("#key").focus();
}

async function loadStacks() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: headers() });
  } catch (error) {
    say(`The stacks could not be listed: ${error.message}`);
    return false;
  }
  if (response.status === 401) {
    askForKey(await errorMessage(response));
    return false;
  }
  if (!response.ok) {
    say(`The stacks could not be listed: ${await errorMessage(response)}`);
    return false;
  }
  const body = await response.json();
  const picker = $("#stack");
  const chosen = picker.value;
  picker.replaceChildren(
    ...body.data.map(({ id }) => {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      return option;
    }),
  );
  if (chosen) picker.value = chosen;
  return true;
}

// --- rendering -------------------------------------------------------------

function seconds(value) {
  return value == null ? "n/a" : `${value.toFixed(1)} s`;
}

const USD = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  maximumSignificantDigits: 2,
});

function dollars(value) {
  return value == null ? "cost unknown" : USD.format(value);
}

function tokens(usage) {
  if (!usage) return "tokens unknown";
  return `${usage.input_tokens} in, ${usage.output_tokens} out`;
}

function isAnswerNode(node) {
  return node === AGGREGATOR || node.startsWith(`${AGGREGATOR}/`);
}

class Turn {
  constructor(question) {
    this.root = $("#turn-template").content.firstElementChild.cloneNode(true);
    $(".question", this.root).textContent = question;
    this.answer = $(".answer", this.root);
    this.text = "";
    // Landmarks are named per turn: a screen reader lists them all at once.
    this.number = $("#conversation").children.length + 1;
    this.root.setAttribute("aria-label", `Turn ${this.number}`);
    this.answer.setAttribute("aria-label", `Answer ${this.number}`);
    $(".summary", this.root).setAttribute("aria-label", `Summary ${this.number}`);
    $("#conversation").append(this.root);
    this.root.setAttribute("aria-busy", "true");
  }

  column(layer) {
    const layers = $(".layers", this.root);
    let column = $(`.layer[data-layer="${layer}"]`, layers);
    if (column) return column;
    column = document.createElement("section");
    column.className = "layer";
    column.dataset.layer = String(layer);
    const title = document.createElement("h3");
    title.textContent = `Layer ${layer}`;
    column.setAttribute("aria-label", `Turn ${this.number}, layer ${layer}`);
    const cards = document.createElement("ol");
    cards.className = "cards";
    column.append(title, cards);
    // Columns in layer order, whichever event came first.
    const after = [...layers.children].find((c) => Number(c.dataset.layer) > layer);
    layers.insertBefore(column, after ?? null);
    return column;
  }

  card(event) {
    const found = [...this.root.querySelectorAll(".card")].find(
      (c) => c.dataset.node === event.node,
    );
    if (found) return found;
    const card = $("#card-template").content.firstElementChild.cloneNode(true);
    card.dataset.node = event.node;
    $(".card-model", card).textContent = event.model;
    const text = $(".card-text", card);
    text.setAttribute("role", "region");
    text.setAttribute("aria-label", `Turn ${this.number}: answer of ${event.node}`);
    $(".cards", this.column(event.layer)).append(card);
    return card;
  }

  started(event) {
    if (isAnswerNode(event.node)) {
      this.answer.dataset.state = "running";
      $(".answer-model", this.answer).textContent = `by ${event.model}`;
      say(`The aggregator (${event.model}) is writing the answer.`);
      return;
    }
    this.card(event);
    say(`${event.node} is answering.`);
  }

  finished(call, failed) {
    const meta = failed
      ? `failed (${(call.reason ?? "error").replaceAll("_", " ")}) after ${seconds(call.latency_s)}`
      : `${tokens(call.usage)} · ${seconds(call.latency_s)} · ${dollars(call.cost_usd)}`;
    if (isAnswerNode(call.node)) {
      // The aggregator's own call, or one of its fallbacks' tries.
      $(".answer-meta", this.answer).textContent = failed
        ? `${call.node} ${meta}: ${call.error}`
        : meta;
      return;
    }
    const card = this.card(call);
    card.dataset.state = failed ? "failed" : "done";
    $(".card-meta", card).textContent = meta;
    const text = $(".card-text", card);
    text.textContent = failed ? call.error : call.text;
    // A tab stop only where there is something to scroll to with the keyboard.
    if (text.scrollHeight > text.clientHeight) text.tabIndex = 0;
    say(`${call.node} ${failed ? "failed" : "answered"}.`);
  }

  token(text) {
    this.text += text;
    this.answer.dataset.state = "streaming";
    $(".answer-text", this.answer).textContent = this.text;
  }

  done(metadata) {
    this.answer.dataset.state = "done";
    const total = metadata.accounting.total;
    const usage = total.usage;
    const rows = [
      ["Calls", `${total.calls} (${total.failures} failed)`],
      ["Tokens", usage ? tokens(usage) : "unknown"],
      ["Cost", dollars(total.cost_usd)],
      ["Critical path", seconds(total.critical_path_s)],
      ["End to end", seconds(total.latency_s)],
      ["First answer token", seconds(total.ttft_s)],
    ];
    const list = $(".totals", this.root);
    for (const [name, value] of rows) {
      const term = document.createElement("dt");
      term.textContent = name;
      const detail = document.createElement("dd");
      detail.textContent = value;
      list.append(term, detail);
    }
    const degradations = $(".degradations", this.root);
    for (const reason of metadata.degradations ?? []) {
      const item = document.createElement("li");
      item.textContent = `Degraded: ${reason}`;
      degradations.append(item);
    }
    $(".summary", this.root).hidden = false;
    this.end();
    say("The answer is complete.");
  }

  failed(message) {
    this.answer.dataset.state = "failed";
    const shown = $(".answer-text", this.answer);
    // The role first: a screen reader announces an alert's text as it appears.
    shown.setAttribute("role", "alert");
    shown.textContent = `No answer: ${message}`;
    this.end();
  }

  end() {
    this.root.removeAttribute("aria-busy");
  }

  handle(event) {
    switch (event.event) {
      case CALL_START:
        this.started(event);
        break;
      case CALL_END:
        this.finished(event, false);
        break;
      case CALL_ERROR:
        this.finished(event, true);
        break;
      case ANSWER_CHUNK:
        this.token(event.text);
        break;
      case ANSWER:
        this.done(event.metadata);
        break;
      case ERROR:
        this.failed(event.error.message);
        break;
      default:
        break;
    }
  }
}

// --- the conversation ---------------------------------------------------------

function parseEvent(block) {
  const data = block
    .split("\n")
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, ""));
  // Comments (": keepalive") and empty blocks carry no event.
  return data.length ? JSON.parse(data.join("\n")) : null;
}

// Server-sent events over a POST: EventSource can only GET.
async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer = (buffer + (value ?? "")).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) yield event;
      }
      if (done) {
        const last = parseEvent(buffer);
        if (last) yield last;
        return;
      }
    }
  } finally {
    // However the reading ends: the server stops the stack when the stream closes.
    reader.cancel().catch(() => {});
  }
}

// Asks the question; true once the answer is complete.
async function ask(question, signal) {
  const turn = new Turn(question);
  const messages = [...page.conversation, { role: "user", content: question }];
  try {
    const response = await fetch("/live", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ model: $("#stack").value, messages }),
      signal,
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      turn.failed(message);
      if (response.status === 401) askForKey(message);
      else say(`No answer: ${message}`);
      return false;
    }
    let outcome = null;
    for await (const event of serverSentEvents(response)) {
      turn.handle(event);
      if (event.event === ANSWER || event.event === ERROR) outcome = event.event;
    }
    if (outcome === ANSWER) {
      // The next turn sends the whole conversation: the server keeps nothing.
      page.conversation = [...messages, { role: "assistant", content: turn.text }];
      return true;
    }
    if (outcome === null) turn.failed("the connection closed before the answer was complete");
    say("No answer: see the turn above.");
    return false;
  } catch (error) {
    const message = signal.aborted ? "stopped for a new conversation" : error.message;
    turn.failed(message);
    say(`No answer: ${message}`);
    return false;
  }
}

async function submit(event) {
  event.preventDefault();
  if (page.running) return;
  const prompt = $("#prompt");
  const question = prompt.value.trim();
  if (!question) {
    say("Type a question first.");
    prompt.focus();
    return;
  }
  const key = $("#key").value;
  if (key && key !== page.key) page.key = key;
  if (!$("#stack").value && !(await loadStacks())) return;
  prompt.value = "";
  $("#send").disabled = true;
  const controller = new AbortController();
  page.running = controller;
  let answered = false;
  try {
    answered = await ask(question, controller.signal);
  } finally {
    page.running = null;
    $("#send").disabled = false;
    // Nothing typed is lost: a question that got no answer is back in the box.
    if (!answered && !controller.signal.aborted && !prompt.value) prompt.value = question;
    if ($("#key-field").hidden || page.key) prompt.focus();
  }
}

function startOver() {
  // A run still going is stopped: its stream closes, and the server cancels its calls.
  page.running?.abort();
  page.conversation = [];
  $("#conversation").replaceChildren();
  say("A new conversation.");
  $("#prompt").focus();
}

async function keyChanged() {
  page.key = $("#key").value || null;
  if (await loadStacks()) {
    say("The key was accepted: ask your question.");
    $("#prompt").focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#ask").addEventListener("submit", submit);
  $("#new").addEventListener("click", startOver);
  $("#key").addEventListener("change", keyChanged);
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#ask").requestSubmit();
    }
  });
  loadStacks();
  $("#prompt").focus();
});
