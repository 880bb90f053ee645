// The official openai npm client against `moa serve`: tools, a streamed tool call,
// a structured answer, and the Responses API plain, streamed and with a function tool.
// Run by test_serve_agents.py with MOA_BASE_URL, MOA_API_KEY and MOA_MODEL set; it prints
// one JSON object of what it saw, and the Python test checks it.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.MOA_BASE_URL,
  apiKey: process.env.MOA_API_KEY,
  maxRetries: 0,
});
const model = process.env.MOA_MODEL;
const weather = {
  type: "function",
  function: {
    name: "weather",
    description: "The weather in a city.",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
      additionalProperties: false,
    },
  },
};
const question = [{ role: "user", content: "What is the weather in 'Paris'?" }];
const seen = {};

const called = await client.chat.completions.create({ model, messages: question, tools: [weather] });
const call = called.choices[0].message.tool_calls[0];
seen.tool_call = { finish: called.choices[0].finish_reason, name: call.function.name,
                   arguments: JSON.parse(call.function.arguments) };
const answered = await client.chat.completions.create({
  model,
  tools: [weather],
  messages: [...question, called.choices[0].message,
             { role: "tool", tool_call_id: call.id, content: "sunny" }],
});
seen.tool_answer = answered.choices[0].message.content;

const stream = await client.chat.completions.create({
  model, messages: question, tools: [weather], stream: true,
  stream_options: { include_usage: true },
});
const fragments = [];
let finish = null;
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    for (const delta of choice.delta.tool_calls ?? []) fragments.push(delta);
    finish = choice.finish_reason ?? finish;
  }
}
seen.streamed_tool_call = {
  first: { index: fragments[0].index, id: Boolean(fragments[0].id), name: fragments[0].function.name },
  arguments: JSON.parse(fragments.map((f) => f.function.arguments ?? "").join("")),
  finish,
  total_tokens: usage?.total_tokens ?? 0,
};

const structured = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "How warm is 'Paris' at 21 degrees?" }],
  response_format: {
    type: "json_schema",
    json_schema: {
      name: "weather_report", strict: true,
      schema: { type: "object", properties: { city: { type: "string" }, degrees: { type: "integer" } },
                required: ["city", "degrees"], additionalProperties: false },
    },
  },
});
seen.structured = JSON.parse(structured.choices[0].message.content);

const plain = await client.responses.create({ model, input: "Name a fruit.", instructions: "Be brief." });
seen.response = { status: plain.status, text: plain.output_text, tokens: plain.usage.total_tokens };

const events = [];
const responseStream = await client.responses.create({ model, input: "Name a fruit.", stream: true });
let streamedText = "";
let completed = null;
for await (const event of responseStream) {
  events.push(event.type);
  if (event.type === "response.output_text.delta") streamedText += event.delta;
  if (event.type === "response.completed") completed = event.response;
}
seen.response_stream = { first: events[0], last: events.at(-1), text: streamedText,
                         completed_text: completed.output[0].content[0].text };

const tool = { type: "function", ...weather.function, strict: true };
const first = await client.responses.create({ model, input: question, tools: [tool] });
const fc = first.output.find((item) => item.type === "function_call");
const second = await client.responses.create({
  model, tools: [tool],
  input: [...question, ...first.output, { type: "function_call_output", call_id: fc.call_id, output: "sunny" }],
});
seen.response_tool = { name: fc.name, arguments: JSON.parse(fc.arguments), answer: second.output_text };

try {
  await client.responses.create({ model, input: "Hi", previous_response_id: "resp_123" });
  seen.previous = "answered";
} catch (error) {
  seen.previous = { status: error.status, param: error.param ?? error.error?.param };
}
console.log(JSON.stringify(seen));
