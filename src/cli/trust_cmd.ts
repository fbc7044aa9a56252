/** `ferry token create` and `ferry login`: letting nodes and people into a cluster. */
import path from "node:path";
import { FerryError } from "../errors.js";
import { redeemToken } from "../node/mod.js";
import { clientCredentialDir, hasCredential, IDENTITY_NAME, newKeyPair, parseToken, writeCredential } from "../trust/mod.js";
import { optionDuration, optionValue, parseArgs, UsageError } from "./_args.js";
import { localUserName } from "./_identity.js";
import { CLUSTER_OPTION, clusterClient } from "./_client.js";

/** Help of `ferry token`. */
export const TOKEN_HELP = `Usage: ferry token create [OPTIONS]

Asks a node that holds the cluster CA for a one-time join token and prints it.
A node joins with \`ferry node start --name NAME --join TOKEN\`; a person on
another account or machine with \`ferry login TOKEN\`. A token works once, until
it expires or its node restarts; it holds the node's address, the CA's
fingerprint and a secret: hand it over as you would a password.

Options:
  --client               A token for a client (a person, a script), not a node.
  --scrape               A token for a scraper (Prometheus): its certificate may
                         read GET /metrics on every node and nothing else. Redeem
                         it with \`ferry login --scrape --out DIR TOKEN\`.
  --name NAME            Only this name may redeem it (default: the joiner picks).
  --ttl DURATION         How long it is valid: 30s, 10m, 2h, 1d (default 1h, at most 7d).
  --json                 Print the API's answer.
  --cluster HOST:PORT    The node to ask (default: $FERRY_CLUSTER, else
                         127.0.0.1:7070). A list A,B,... asks the first that
                         answers: commands go on when a node is down.
  -h, --help             Show this help.
`;

/** Help of `ferry login`. */
export const LOGIN_HELP = `Usage: ferry login [OPTIONS] TOKEN

Redeems a client token from \`ferry token create --client\` for a certificate of
a key made here, and keeps both in ~/.ferry/client (or $FERRY_CREDENTIALS; key
0600). Every ferry command then uses it. The node that issued the token is
checked against the CA fingerprint in the token before anything is sent.

Options:
  --name NAME            Your name in the cluster (default: the token's, else this
                         account's name).
  --force                Replace a credential that is already there.
  --scrape               Redeem a scrape token (ferry token create --scrape):
                         writes ca.pem, cert.pem and key.pem into --out DIR for
                         a Prometheus scrape job's tls_config.
  --out DIR              Where a scrape credential goes (required with --scrape).
  -h, --help             Show this help.
`;

/** `ferry token`. */
export async function tokenCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help") {
    process.stdout.write(TOKEN_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== "create") throw new UsageError(`unknown token command ${JSON.stringify(sub)} (see ferry token --help)`);
  const parsed = parseArgs(
    rest,
    [
      { name: "client", value: false },
      { name: "scrape", value: false },
      { name: "name", value: true },
      { name: "ttl", value: true },
      { name: "json", value: false },
      CLUSTER_OPTION,
      { name: "help", value: false, short: "h" },
    ],
    false,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(TOKEN_HELP);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument ${parsed.positionals[0]}`);
  const name = optionValue(parsed, "name");
  if (name !== undefined && !IDENTITY_NAME.test(name)) throw new UsageError("--name: 1-64 letters, digits, _ . @ -");
  const ttl_ms = optionDuration(parsed, "ttl");
  if (parsed.flags.has("scrape") && parsed.flags.has("client")) throw new UsageError("--client or --scrape, not both");
  const answer = (await clusterClient(parsed).json("POST", "/v1/tokens", {
    role: parsed.flags.has("scrape") ? "scrape" : parsed.flags.has("client") ? "client" : "node",
    ...(name !== undefined ? { name } : {}),
    ...(ttl_ms !== undefined ? { ttl_ms } : {}),
  })) as { token: string; expires_unix_ms: number; node: string };
  if (parsed.flags.has("json")) process.stdout.write(`${JSON.stringify(answer)}\n`);
  else {
    process.stdout.write(`${answer.token}\n`);
    if (process.stderr.isTTY) process.stderr.write(`(valid once, until ${new Date(answer.expires_unix_ms).toISOString()}, at node ${answer.node})\n`);
  }
  return 0;
}

/** `ferry login`. */
export async function loginCommand(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(
    argv,
    [
      { name: "name", value: true },
      { name: "force", value: false },
      { name: "scrape", value: false },
      { name: "out", value: true },
      { name: "help", value: false, short: "h" },
    ],
    false,
  );
  if (parsed.flags.has("help")) {
    process.stdout.write(LOGIN_HELP);
    return 0;
  }
  const [text, extra] = parsed.positionals;
  if (text === undefined) throw new UsageError("missing TOKEN (see ferry login --help)");
  if (extra !== undefined) throw new UsageError(`unexpected argument ${extra}`);
  const token = parseToken(text);
  const scrape = parsed.flags.has("scrape");
  const want = scrape ? "scrape" : "client";
  if (token.role !== want) throw new FerryError("ERR_TOKEN", `this token is for a ${token.role}${token.role === "node" ? " (ferry node start --join)" : token.role === "scrape" ? " (ferry login --scrape --out DIR)" : " (ferry login without --scrape)"}, not a ${want}`);
  const out = optionValue(parsed, "out");
  if (scrape && out === undefined) throw new UsageError("--scrape needs --out DIR: where the scraper's credential goes");
  if (!scrape && out !== undefined) throw new UsageError("--out is for --scrape only (a client's credential goes to ~/.ferry/client or $FERRY_CREDENTIALS)");
  const name = optionValue(parsed, "name") ?? token.name ?? (scrape ? "prometheus" : localUserName());
  if (!IDENTITY_NAME.test(name)) throw new UsageError("--name: 1-64 letters, digits, _ . @ -");
  const dir = out !== undefined ? path.resolve(out) : clientCredentialDir();
  if (hasCredential(dir) && !parsed.flags.has("force")) throw new UsageError(`${dir} already holds a credential; --force replaces it`);
  const keys = await newKeyPair();
  const answer = await redeemToken(token, { name, public_key_der: keys.public_key_der });
  writeCredential(dir, { ca_pem: answer.ca_pem, cert_pem: answer.cert_pem, key_pem: keys.key_pem });
  process.stdout.write(`logged in as ${want} ${name} of the cluster at ${token.address}; credential in ${dir}\n`);
  return 0;
}
