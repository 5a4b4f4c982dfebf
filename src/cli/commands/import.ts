// `hopway import FILE`: loads a topology (the format of topologies/*.yaml, or a
// list of records, as YAML or JSON) into a realm of a running edge. The edge
// stores all of it or none of it, so a failed import leaves the realm as it was.
import { readFile } from "node:fs/promises";
import {
  type CliIo,
  EdgeClient,
  EXIT_OK,
  parseCommandLine,
  processIo,
  reportError,
  resolveTarget,
  TARGET_HELP,
  TARGET_OPTIONS,
  UsageError,
} from "../edge-client.ts";

export const summary = "import a topology file (YAML or JSON) into a realm of a running edge";

const HELP = `usage: hopway import FILE [--edge URL] [--realm NAME] [--token TOKEN] [--json]

Stores every record of FILE in the realm, or, if any record is invalid, none
of them; the problems are listed by path (app1.discovery.gateway[0].priority).
FILE may be '-' for standard input. Needs the admin token, or an agent token
whose namespaces hold every record in FILE (and any record it replaces); an
agent's gateway addresses must also pass the realm's address policy
(docs/security/edge.md). The realm must exist: the admin creates it with
PUT /v1/realms/NAME.

${TARGET_HELP}
exit status: 0 imported, 1 edge or network error, 2 bad usage or invalid file
`;

/** Files are capped well above any sane topology so a wrong path (a disk image) fails fast. */
const MAX_FILE_BYTES = 8 * 1024 * 1024;

export async function run(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseCommandLine("import", argv, TARGET_OPTIONS, true);
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length !== 1)
      throw new UsageError(`import takes exactly one FILE (hopway import --help lists the flags)`);
    const file = positionals[0] as string;
    const target = resolveTarget(values, io.env);
    const text = await readInput(file);
    const client = new EdgeClient(target);
    const answer = await client.importTopology(text, detectFormat(file, text));
    const count = answer.records;
    if (values.json) io.stdout(`${JSON.stringify(answer)}\n`);
    else
      io.stdout(
        `imported ${count} record${count === 1 ? "" : "s"} into realm ${target.realm} (version ${answer.version})\n`,
      );
    return EXIT_OK;
  } catch (error) {
    return reportError(error, io);
  }
}

async function readInput(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = file === "-" ? await readStdin() : await readFile(file);
  } catch (error) {
    const reason = error instanceof Error && "code" in error ? String(error.code) : String(error);
    throw new UsageError(`cannot read ${file}: ${reason}`);
  }
  if (bytes.length > MAX_FILE_BYTES) throw new UsageError(`${file} is larger than ${MAX_FILE_BYTES} bytes`);
  const text = bytes.toString("utf8");
  if (text.trim() === "") throw new UsageError(`${file} is empty`);
  return text;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buf.length;
    if (size > MAX_FILE_BYTES) throw new UsageError(`standard input is larger than ${MAX_FILE_BYTES} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/** The extension decides; without one, a document that starts like JSON is JSON (YAML would also parse it, less strictly). */
export function detectFormat(file: string, text: string): "yaml" | "json" {
  if (/\.json$/i.test(file)) return "json";
  if (/\.ya?ml$/i.test(file)) return "yaml";
  return /^\s*[[{]/.test(text) ? "json" : "yaml";
}
