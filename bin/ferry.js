#!/usr/bin/env node
// The ferry command. Built sources live in dist/ (npm run build).
import { cliEntry } from "./_entry.js";

const { main } = await import(cliEntry().href);
const code = await main(process.argv.slice(2));
// Exit explicitly: a read-ahead of stdin may still hold the event loop.
process.exit(code);
