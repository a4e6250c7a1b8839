import { Client } from "@gradio/client";

const url = globalThis.process?.argv[2] ?? "http://127.0.0.1:7860/"; // or your Space's id
// "status" too: with the default (["data"]) a failed call yields nothing at all.
const client = await Client.connect(url, { events: ["data", "status"] });

async function chat(message, options = {}) {
  let reply = "";
  for await (const event of client.submit("/chat", { message, ...options })) {
    if (event.type === "status" && event.stage === "error") throw new Error(event.message);
    if (event.type === "data" && event.data[0] !== reply) {
      reply = event.data[0]; // the reply so far, growing (the last value arrives twice)
      console.log(`partial: ${reply}`);
    }
  }
  return reply;
}

try {
  console.log(`reply: ${await chat("Name three primary colours, then say which one is the warmest.")}`);
  await chat("Hi", { temperature: 5 }); // refused: temperature is 0-2
} catch (error) {
  console.log(`error: ${error.message}`);
} finally {
  client.close(); // ends its event stream, so that Node exits even after an unfinished call
}
