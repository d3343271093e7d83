// GramJS's side of tests/e2e/telegram.rs: makes and loads StringSessions with the real library
// (npm `telegram`, pinned in package.json). Nothing connects to Telegram: no TelegramClient is
// created.
//
//   node check_gramjs.mjs make DC IP PORT   prints {"session", "dcId", "serverAddress", "port", "authKey"}
//   node check_gramjs.mjs load              reads {"name": "session string", ...} on stdin; prints,
//                                           per name, what GramJS loaded or {"error": "..."}
// authKey is hex.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { StringSession } = require("telegram/sessions/index.js");
const { AuthKey } = require("telegram/crypto/AuthKey.js");
const { version } = require("telegram/package.json");

function loaded(s) {
  const key = s.authKey ? s.authKey.getKey() : undefined;
  return {
    dcId: s.dcId,
    serverAddress: s.serverAddress,
    port: s.port,
    authKey: key ? Buffer.from(key).toString("hex") : null,
  };
}

process.stderr.write(`telegram (GramJS) ${version}\n`);
const [cmd, ...args] = process.argv.slice(2);
if (cmd === "make") {
  const s = new StringSession("");
  s.setDC(Number(args[0]), args[1], Number(args[2]));
  const key = new AuthKey();
  await key.setKey(randomBytes(256));
  s.setAuthKey(key);
  console.log(JSON.stringify({ ...loaded(s), session: s.save() }));
} else if (cmd === "load") {
  const out = {};
  for (const [name, string] of Object.entries(JSON.parse(readFileSync(0, "utf8")))) {
    try {
      const s = new StringSession(string);
      await s.load();
      out[name] = loaded(s);
    } catch (e) {
      out[name] = { error: String(e).slice(0, 200) };
    }
  }
  console.log(JSON.stringify(out));
} else {
  console.error("usage: node check_gramjs.mjs make DC IP PORT | load");
  process.exit(2);
}
