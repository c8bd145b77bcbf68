// Server-sent events over fetch (EventSource cannot POST or send the CSRF header): yields each
// `data:` payload parsed as JSON until `[DONE]`, and NDJSON lines for the Ollama-style pull stream.

export async function* sseEvents(response) {
  for await (const block of chunks(response, /\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""))
      .join("\n");
    if (!data) continue;
    if (data === "[DONE]") return;
    yield JSON.parse(data);
  }
}

export async function* ndjsonLines(response) {
  for await (const line of chunks(response, /\r?\n/)) {
    if (line.trim()) yield JSON.parse(line);
  }
}

async function* chunks(response, separator) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const parts = buffer.split(separator);
      buffer = parts.pop();
      for (const part of parts) yield part;
    }
    buffer += decoder.decode();
    if (buffer.trim()) yield buffer;
  } finally {
    reader.releaseLock();
  }
}
