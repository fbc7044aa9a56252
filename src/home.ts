/** Where Ferry keeps a user's keys and credentials: $FERRY_HOME, else ~/.ferry. */
import os from "node:os";
import path from "node:path";

/** The Ferry home directory (not created here). */
export function ferryHome(env: NodeJS.ProcessEnv = process.env): string {
  const given = env["FERRY_HOME"];
  return given !== undefined && given !== "" ? path.resolve(given) : path.join(os.homedir(), ".ferry");
}
