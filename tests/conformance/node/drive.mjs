// Drives one session of the real TypeScript Agent SDK against a `claude` executable and prints
// one JSON object (what the SDK yielded, what callbacks it made) on the last stdout line.
//
//   node drive.mjs '<json config>'
//   config: {sdk: "sdk-0.1.76"|"sdk-0.3.335", session: "plain"|"multi-interrupt"|
//            "queued-prompts"|"tools"|"permission-request"|"hooks"|
//            "partial"|"status"|"set-mode"|"mcp"|"tool-interrupt"|"exit-after-result"|"break-after-result"|
//            "abort-after-result"|"claude-mem",
//            claude: "/path/to/claude", prompt?: string,
//            deadlineMs?: number, lingerMs?: number, releaseInput?: boolean,
//            outputFormat?: {type: "json_schema", schema: object},
//            options?: object (more query() options, JSON: e.g. mcpServersDelivery),
//            markerFile?: string, resume?: string, decision?: object, canUse?: object, mode?: string,
//            hookEvents?: string[], sdkTool?: boolean}
//
// "exit-after-result" is the leak demonstration: the parent exits right after the first result
// without ending the session, so only the SDK's own exit-time cleanup stands between the child
// and an orphan.

import { readFileSync, writeFileSync } from "node:fs";

const cfg = JSON.parse(process.argv[2]);
const deadlineMs = cfg.deadlineMs ?? 60000;
const { query } = await import(cfg.sdk);
const sdkVersion = JSON.parse(
  readFileSync(new URL(`./node_modules/${cfg.sdk}/package.json`, import.meta.url), "utf8"),
).version;

const out = {
  sdk: cfg.sdk,
  sdk_version: sdkVersion,
  session: cfg.session,
  messages: [],
  can_use_tool: [],
  hooks: [],
  interrupt: null,
  error: null,
  driver_pid: process.pid,
};

function finish(code) {
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(code);
}

// A watchdog, so a hung SDK never hangs the test: report what was seen so far and fail.
setTimeout(() => {
  out.error = `driver deadline of ${deadlineMs} ms passed`;
  finish(3);
}, deadlineMs);

function summarise(m) {
  const s = { type: m.type };
  if (m.subtype !== undefined) s.subtype = m.subtype;
  if (m.session_id !== undefined) s.session_id = m.session_id;
  if (m.type === "assistant" || m.type === "user") {
    const c = m.message?.content;
    s.content = typeof c === "string" ? [{ type: "text", text: c }] : (c ?? []).map((b) => ({
      type: b.type,
      ...(b.text !== undefined && { text: b.text }),
      ...(b.name !== undefined && { name: b.name }),
      ...(b.type === "tool_use" && { id: b.id }),
      ...(b.tool_use_id !== undefined && { tool_use_id: b.tool_use_id }),
      ...(b.type === "tool_result" && { content: b.content, is_error: b.is_error ?? false }),
    }));
  }
  if (m.type === "result") {
    Object.assign(s, { is_error: m.is_error, result: m.result, num_turns: m.num_turns });
    if ("structured_output" in m) s.structured_output = m.structured_output;
    if (m.errors !== undefined) s.errors = m.errors;
    if (m.startup_failure_reason !== undefined) s.startup_failure_reason = m.startup_failure_reason;
  }
  if (m.type === "stream_event") s.event_type = m.event?.type;
  if (m.type === "system" && m.subtype === "init") {
    Object.assign(s, { model: m.model, tools: m.tools, mcp_servers: m.mcp_servers });
    s.permission_mode = m.permissionMode;
  }
  return s;
}

const baseOptions = {
  pathToClaudeCodeExecutable: cfg.claude,
  model: cfg.model ?? "claude-sonnet-4-5",
  settingSources: [],
  ...(cfg.outputFormat && { outputFormat: cfg.outputFormat }),
  ...cfg.options, // any other query() options, as JSON
  // Keep the child's stderr out of our stdout; the test only reads the last stdout line.
  stderr: () => {},
};

function userMessage(text) {
  return {
    type: "user",
    message: { role: "user", content: text },
    parent_tool_use_id: null,
    session_id: "",
  };
}

async function plain(extra = {}) {
  const q = query({ prompt: cfg.prompt ?? "Say hello", options: { ...baseOptions, ...extra } });
  for await (const m of q) out.messages.push(summarise(m));
}

async function multiInterrupt() {
  // Streaming input: turn 1 runs to completion, turn 2 is interrupted once it has started,
  // turn 3 shows the session is still usable; then the input ends, which ends stdin.
  let results = 0;
  let wake = () => {};
  const resultsReached = (n) =>
    new Promise((resolve) => {
      const check = () => (results >= n ? resolve() : (wake = check));
      check();
    });
  const prompts = ["first turn", "second turn, to be interrupted", "third turn"];
  async function* input() {
    for (const [i, p] of prompts.entries()) {
      yield userMessage(p);
      await resultsReached(i + 1);
    }
  }
  // cfg.hookEvents: a recording hook for each (e.g. Interrupt), their inputs to out.hooks.
  const hook = async (input) => {
    out.hooks.push({ ...input });
    return {};
  };
  const hooks = Object.fromEntries((cfg.hookEvents ?? []).map((e) => [e, [{ hooks: [hook] }]]));
  const q = query({ prompt: input(), options: { ...baseOptions, hooks } });
  let interrupted = false;
  for await (const m of q) {
    out.messages.push(summarise(m));
    if (m.type === "system" && m.subtype === "init" && results === 1 && !interrupted) {
      interrupted = true;
      try {
        await q.interrupt();
        out.interrupt = "ok";
      } catch (e) {
        out.interrupt = `error: ${e.message}`;
      }
    }
    if (m.type === "result") {
      results += 1;
      wake();
    }
  }
}

async function recordHook(input, toolUseId) {
  out.hooks.push({
    hook_event_name: input.hook_event_name,
    tool_name: input.tool_name ?? null,
    tool_use_id: toolUseId ?? null,
    ...(input.prompt !== undefined && { prompt: input.prompt }),
  });
  return { continue: true };
}

// Two prompts written at once, then the input ends; a hook keeps stdin open until the CLI
// says the run is over ("idle"), which it must not say while the second prompt waits.
async function queuedPrompts() {
  async function* input() {
    yield userMessage("first prompt");
    yield userMessage("second prompt");
  }
  const hooks = { UserPromptSubmit: [{ hooks: [recordHook] }] };
  const q = query({ prompt: input(), options: { ...baseOptions, hooks } });
  for await (const m of q) out.messages.push(summarise(m));
}

async function tools() {
  await plain({
    canUseTool: async (toolName, input, ctx) => {
      out.can_use_tool.push({ tool_name: toolName, input, has_signal: !!ctx?.signal });
      return { behavior: "allow", updatedInput: input };
    },
    hooks: {
      UserPromptSubmit: [{ hooks: [recordHook] }],
      PreToolUse: [{ hooks: [recordHook] }],
      Stop: [{ hooks: [recordHook] }],
    },
  });
}

// A PermissionRequest hook answering with cfg.decision (none: {}), beside a canUseTool that
// answers cfg.canUse (none: allows): what each was called with goes to out.hooks (the input,
// and the request's id) and out.can_use_tool; with cfg.hookEvents, a recording hook for each
// of those events too (answering {}).
async function permissionRequest() {
  async function hook(input, toolUseId) {
    out.hooks.push({ ...input, tool_use_id_arg: toolUseId ?? null });
    if (!cfg.decision || input.hook_event_name !== "PermissionRequest") return {};
    return { hookSpecificOutput: { hookEventName: "PermissionRequest", decision: cfg.decision } };
  }
  const more = Object.fromEntries((cfg.hookEvents ?? []).map((e) => [e, [{ hooks: [hook] }]]));
  await plain({
    canUseTool: async (toolName, input) => {
      out.can_use_tool.push({ tool_name: toolName, input });
      return cfg.canUse ?? { behavior: "allow", updatedInput: input };
    },
    hooks: { PermissionRequest: [{ matcher: "Bash", hooks: [hook] }], ...more },
  });
}

// A recording hook, answering {}, for each event in cfg.hookEvents: each input as given, and the
// id the request named, go to out.hooks in call order.
async function hooks() {
  async function hook(input, toolUseId) {
    out.hooks.push({ ...input, tool_use_id_arg: toolUseId ?? null });
    return {};
  }
  const events = Object.fromEntries((cfg.hookEvents ?? []).map((e) => [e, [{ hooks: [hook] }]]));
  await plain({ hooks: events });
}

// claude-mem's shape: a streaming input that never ends on its own (a message generator fed by
// a queue). After the first result the session is ended either by leaving the loop (iterator
// return(): the SDK's close()) or by aborting the controller; then the driver lingers so the
// SDK's escalation timers can fire, and reports how and when the child ended.
async function endAfterResult(how) {
  const abortController = new AbortController();
  let release;
  const never = new Promise((r) => (release = r));
  async function* input() {
    yield userMessage(cfg.prompt ?? "Say hello");
    await never;
  }
  const q = query({ prompt: input(), options: { ...baseOptions, abortController } });
  const t0 = Date.now();
  try {
    for await (const m of q) {
      out.messages.push(summarise(m));
      if (m.type === "result") {
        out.ended_at_ms = Date.now() - t0;
        if (how === "abort") abortController.abort();
        break;
      }
    }
  } catch (e) {
    out.error_after_end = String(e?.message ?? e);
  }
  // releaseInput=false keeps the input generator pending, as a daemon's session queue would.
  if (cfg.releaseInput !== false) release();
  // Tells a watching test that the session is over as far as the caller is concerned.
  if (cfg.markerFile) writeFileSync(cfg.markerFile, JSON.stringify({ pid: process.pid }));
  await new Promise((r) => setTimeout(r, cfg.lingerMs ?? 0));
}

// claude-mem 9.0.0's SDKAgent, as far as the child can tell: its options (no settingSources, no
// permissionMode: the SDK's defaults), a synthetic user message from a queue-fed generator that
// never ends, and an abort when the session completes.
const CLAUDE_MEM_DISALLOWED = [
  "Bash", "Read", "Write", "Edit", "Grep", "Glob", "WebFetch", "WebSearch", "Task",
  "NotebookEdit", "AskUserQuestion", "TodoWrite",
];

async function claudeMem() {
  const abortController = new AbortController();
  let release;
  const never = new Promise((r) => (release = r));
  async function* input() {
    yield {
      type: "user",
      message: { role: "user", content: cfg.prompt ?? "<observed_from_primary_session/>" },
      session_id: cfg.resume ?? "",
      parent_tool_use_id: null,
      isSynthetic: true,
    };
    await never;
  }
  const options = {
    model: "claude-sonnet-4-5",
    disallowedTools: CLAUDE_MEM_DISALLOWED,
    abortController,
    pathToClaudeCodeExecutable: cfg.claude,
    ...(cfg.resume && { resume: cfg.resume }),
  };
  try {
    for await (const m of query({ prompt: input(), options })) {
      out.messages.push(summarise(m));
      if (m.type === "result") {
        abortController.abort();
        break;
      }
    }
  } catch (e) {
    out.error_after_end = String(e?.message ?? e);
  }
  release();
}

// The Query object's status and settings calls, one turn in: what each answered (a value the
// SDK's types promise, or the error it raised), under out.status.
async function status() {
  let release;
  const done = new Promise((r) => (release = r));
  async function* input() {
    yield userMessage(cfg.prompt ?? "count the words of this question");
    await done;
  }
  const q = query({ prompt: input(), options: { ...baseOptions } });
  // [what, method, args]: a method an SDK version lacks is left out of out.status.
  const calls = [
    ["contextUsage", "getContextUsage", []],
    ["mcpServerStatus", "mcpServerStatus", []],
    ["setModel", "setModel", ["claude-opus-4"]],
    ["setPermissionMode", "setPermissionMode", ["acceptEdits"]],
    ["supportedModels", "supportedModels", []],
    ["setMcpServers", "setMcpServers", [{}]],
  ];
  out.status = {};
  for await (const m of q) {
    out.messages.push(summarise(m));
    if (m.type === "result") {
      for (const [what, method, args] of calls) {
        if (typeof q[method] !== "function") continue;
        try {
          out.status[what] = { value: (await q[method](...args)) ?? null };
        } catch (e) {
          out.status[what] = { error: String(e?.message ?? e) };
        }
      }
      release();
    }
  }
}

// Two prompts, each a tool turn answered by a recording canUseTool; between them the caller
// switches the permission mode to cfg.mode: what setPermissionMode answered (or the error it
// raised) goes to out.set_mode.
async function setMode() {
  let next, last;
  const between = new Promise((r) => (next = r));
  const done = new Promise((r) => (last = r));
  async function* input() {
    yield userMessage("first prompt");
    await between;
    yield userMessage("second prompt");
    await done; // 0.1.76 ends stdin when the input ends, before canUseTool could answer
  }
  const canUseTool = async (toolName, input) => {
    out.can_use_tool.push({ tool_name: toolName });
    return { behavior: "allow", updatedInput: input };
  };
  const q = query({ prompt: input(), options: { ...baseOptions, canUseTool } });
  for await (const m of q) {
    out.messages.push(summarise(m));
    if (m.type === "result" && !out.set_mode) {
      try {
        out.set_mode = { value: (await q.setPermissionMode(cfg.mode)) ?? null };
      } catch (e) {
        out.set_mode = { error: String(e?.message ?? e) };
      }
      next();
    } else if (m.type === "result") last();
  }
}

// An in-process MCP tool of ours (createSdkMcpServer): the child reaches it through the SDK
// (mcp_message control requests); what it was called with goes to out.tool_calls.
async function mcp() {
  const sdkModule = await import(cfg.sdk);
  const { z } = await import("zod");
  out.tool_calls = [];
  const add = sdkModule.tool(
    "add",
    "Add two integers",
    { a: z.number(), b: z.number() },
    async (args) => {
      out.tool_calls.push(args);
      return { content: [{ type: "text", text: `sum=${args.a + args.b}` }] };
    },
  );
  const server = sdkModule.createSdkMcpServer({ name: "calc", version: "1.0.0", tools: [add] });
  await plain({ mcpServers: { calc: server }, allowedTools: ["mcp__calc__add"] });
}

async function toolInterrupt() {
  // One turn whose tool never finishes: interrupt() once the tool use is seen (how long the
  // answer took: interrupt_ms), then the input ends. With cfg.sdkTool the tool is the driver's
  // own (an SDK MCP server's), which records whether its abort signal fired (tool_aborted);
  // otherwise it is whatever cfg.options' mcpServers offer.
  let extra = {};
  if (cfg.sdkTool) {
    const sdkModule = await import(cfg.sdk);
    out.tool_aborted = false;
    const wait = sdkModule.tool("wait", "Wait for ever", {}, (args, ctx) =>
      new Promise((resolve) => {
        ctx?.signal?.addEventListener("abort", () => {
          out.tool_aborted = true;
          resolve({ content: [] });
        });
      }),
    );
    const server = sdkModule.createSdkMcpServer({ name: "slow", tools: [wait] });
    extra = { mcpServers: { slow: server }, allowedTools: ["mcp__slow__wait"] };
  }
  let done = () => {};
  const finished = new Promise((resolve) => (done = resolve));
  async function* input() {
    yield userMessage(cfg.prompt ?? "wait for it");
    await finished;
  }
  const q = query({ prompt: input(), options: { ...baseOptions, ...extra } });
  try {
    for await (const m of q) {
      out.messages.push(summarise(m));
      if (m.type === "assistant" && m.message.content.some((b) => b.type === "tool_use")) {
        const asked = Date.now();
        await q.interrupt();
        out.interrupt_ms = Date.now() - asked;
      }
      if (m.type === "result") {
        // Give a tool's abort a moment to land, then end the input (and so stdin).
        await new Promise((resolve) => setTimeout(resolve, 200));
        done();
      }
    }
  } catch (e) {
    // The CLI exits 1 at stdin EOF when its last result was an error (the interrupted turn's).
    if (!out.messages.some((m) => m.type === "result")) throw e;
    out.ended_with = String(e?.message ?? e);
  }
}

async function exitAfterResult() {
  const q = query({ prompt: cfg.prompt ?? "Say hello", options: { ...baseOptions } });
  for await (const m of q) {
    out.messages.push(summarise(m));
    if (m.type === "result") finish(0);
  }
}

const sessions = {
  plain: () => plain(),
  partial: () => plain({ includePartialMessages: true }),
  "multi-interrupt": multiInterrupt,
  "queued-prompts": queuedPrompts,
  tools,
  "permission-request": permissionRequest,
  hooks,
  status,
  "set-mode": setMode,
  mcp,
  "tool-interrupt": toolInterrupt,
  "exit-after-result": exitAfterResult,
  "break-after-result": () => endAfterResult("break"),
  "abort-after-result": () => endAfterResult("abort"),
  "claude-mem": claudeMem,
};

try {
  await sessions[cfg.session]();
} catch (e) {
  out.error = String(e?.message ?? e);
  if (process.env.DRIVE_DEBUG) out.stack = String(e?.stack);
}
finish(out.error ? 1 : 0);
