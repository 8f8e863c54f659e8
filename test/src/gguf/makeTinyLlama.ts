// Tiny random-weight llama models (SPM tokenizer with byte fallback) for tests.
import { GgmlType, GgufWriter } from "./GgufWriter.js";

export interface TinyLlamaOptions {
    /** "qwen2vl": the same weights under Qwen2-VL's architecture, whose positions are M-RoPE (4 sections). Default "llama". */
    arch?: "llama" | "qwen2vl";
    /** PRNG seed; the same options always produce a byte-identical file. Default 1. */
    seed?: number;
    nEmbd?: number;
    nLayer?: number;
    nHead?: number;
    nHeadKv?: number;
    nFf?: number;
    contextLength?: number;
    name?: string;
    /** Written as tokenizer.chat_template when given (see CHATML_TEMPLATE). */
    chatTemplate?: string;
    /** Appended after CONTROL_TOKENS, so the ids in CONTROL_TOKEN_IDS never move. */
    extraControlTokens?: string[];
    /** Storage of the 2-D weights (norms stay F32). Default "f32". */
    weightType?: "f32" | "f16" | "q8_0";
    /**
     * Make EOS the greedy choice at every step (for end-of-generation tests): embedding dim 0 is a
     * large constant for every token, so the final hidden state always leans on it, and only the
     * EOS output row reads that dimension strongly.
     */
    eosEager?: boolean;
    /** Like eosEager, for another token: greedy decoding picks this token whenever it may. */
    eagerToken?: string;
}

export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export const UNK_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;

/** Control tokens at ids 3.. in this order (ids in CONTROL_TOKEN_IDS). */
export const CONTROL_TOKENS: readonly string[] = Object.freeze([
    "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
    "<start_of_turn>", "<end_of_turn>", "<|endoftext|>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
    "[INST]", "[/INST]", "<tool_call>", "</tool_call>",
]);

export const CONTROL_TOKEN_IDS: Readonly<Record<string, number>> = Object.freeze(
    Object.fromEntries(CONTROL_TOKENS.map((t, i) => [t, 3 + i])),
);

export const CHATML_TEMPLATE =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const WORDS = `the of and to a in is you that it he was for on are as with his they I at be this have from
or one had by word but not what all were we when your can said there use an each which she do how their
if will up other about out many then them these so some her would make like him into time has look two
more write go see number no way could people my than first water been call who oil its now find long down
day did get come made may part over new sound take only little work know place year live me back give most
very after thing our just name good sentence man think say great where help through much before line right
too mean old any same tell boy follow came want show also around form three small set put end does another
well large must big even such because turn here why ask went men read need land different home us move try
kind hand picture again change off play spell air away animal house point page letter mother answer found
study still learn should world hello assistant user system model chat token cache session reply question
yes sure thanks please once upon story girl cat dog tree sun happy day The It Once Hello He She They What`.split(/\s+/);

// Pieces that also appear without the word-start marker (suffixes, word-internal starts).
const SUBWORDS = ["ing", "ed", "er", "ly", "tion", "es", "est", "ness", "ment", "'s", "n't", "Once", "Hello", "world", "time"];

export interface TinyVocab {
    tokens: string[];
    scores: number[];
    types: number[];
    /** First id of the NORMAL pieces; everything below it is special or byte tokens. */
    firstNormalId: number;
}

export function buildTinyVocab(extraControlTokens: readonly string[] = []): TinyVocab {
    const tokens: string[] = [];
    const scores: number[] = [];
    const types: number[] = [];
    const seen = new Set<string>();
    const add = (t: string, score: number, type: number): void => {
        if (seen.has(t)) throw new Error(`duplicate token ${JSON.stringify(t)}`);
        seen.add(t);
        tokens.push(t);
        scores.push(score);
        types.push(type);
    };

    add("<unk>", 0, TOKEN_TYPE.UNKNOWN);
    add("<s>", 0, TOKEN_TYPE.CONTROL);
    add("</s>", 0, TOKEN_TYPE.CONTROL);
    for (const t of [...CONTROL_TOKENS, ...extraControlTokens]) add(t, 0, TOKEN_TYPE.CONTROL);
    for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, 0, TOKEN_TYPE.BYTE);
    const firstNormalId = tokens.length;

    // SPM in llama.cpp only reaches a piece through pairwise merges of pieces already in
    // the vocab, so every prefix of a word must exist for the whole word to be produced.
    const pieces: string[] = [];
    const piece = (p: string): void => {
        if (!seen.has(p) && !pieces.includes(p)) pieces.push(p);
    };
    for (let c = 0x21; c <= 0x7e; c++) piece(String.fromCharCode(c));
    piece("\u2581");
    for (let c = 0x61; c <= 0x7a; c++) piece("\u2581" + String.fromCharCode(c));
    for (const w of [...WORDS.map((w) => "\u2581" + w), ...SUBWORDS]) {
        for (let i = 2; i <= w.length; i++) piece(w.slice(0, i));
    }
    // The merge step picks the highest-scoring pair, so scoring by length makes whole words win.
    pieces.forEach((p, i) => add(p, -1000 + 10 * p.length - i * 1e-3, TOKEN_TYPE.NORMAL));
    return { tokens, scores, types, firstNormalId };
}

// llama_ftype values: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0.
const FILE_TYPE = { f32: 0, f16: 1, q8_0: 7 } as const;
const WEIGHT_GGML_TYPE = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0 } as const;

/** mulberry32 uniform in [0, 1) with Box-Muller normals; V8's Math.log/cos are fdlibm ports, so reproducible. */
export function makeRng(seed: number): { normal(): number } {
    let a = seed >>> 0;
    let spare: number | null = null;
    const uniform = (): number => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    return {
        normal(): number {
            if (spare !== null) {
                const s = spare;
                spare = null;
                return s;
            }
            const u = 1 - uniform(); // (0, 1], keeps log finite
            const r = Math.sqrt(-2 * Math.log(u));
            const th = 2 * Math.PI * uniform();
            spare = r * Math.sin(th);
            return r * Math.cos(th);
        },
    };
}

/**
 * Writes a tiny llama GGUF to `path`, synchronously (all F32 unless `weightType` says otherwise).
 * Logit rows of all special/byte tokens are zero, so greedy decoding only ever emits NORMAL
 * (printable ASCII) pieces: it never ends on EOS/EOG by itself and never emits partial UTF-8.
 */
export function makeTinyLlama(path: string, opts: TinyLlamaOptions = {}): void {
    const {
        seed = 1, nEmbd = 128, nLayer = 2, nHead = 4, nHeadKv = 4, nFf = 256,
        contextLength = 4096, name = "nanollm-tiny-test", chatTemplate, extraControlTokens = [],
        weightType = "f32", eosEager = false, eagerToken, arch = "llama",
    } = opts;
    if (nEmbd % nHead !== 0 || nHead % nHeadKv !== 0) throw new Error("nEmbd % nHead and nHead % nHeadKv must be 0");
    const headDim = nEmbd / nHead;
    const vocab = buildTinyVocab(extraControlTokens);
    const nVocab = vocab.tokens.length;
    const rng = makeRng(seed);

    // `rows` x `cols` row-major (out x in) => ggml ne = [cols, rows].
    const matrix = (rows: number, cols: number, std: number): Float32Array => {
        const m = new Float32Array(rows * cols);
        for (let i = 0; i < m.length; i++) m[i] = rng.normal() * std;
        return m;
    };
    const ones = (n: number): Float32Array => new Float32Array(n).fill(1);

    const w = new GgufWriter();
    w.addString("general.architecture", arch)
        .addString("general.name", name)
        .addUint32("general.file_type", FILE_TYPE[weightType])
        .addUint32(`${arch}.context_length`, contextLength)
        .addUint32(`${arch}.embedding_length`, nEmbd)
        .addUint32(`${arch}.block_count`, nLayer)
        .addUint32(`${arch}.feed_forward_length`, nFf)
        .addUint32(`${arch}.attention.head_count`, nHead)
        .addUint32(`${arch}.attention.head_count_kv`, nHeadKv)
        .addUint32(`${arch}.rope.dimension_count`, headDim)
        .addFloat32(`${arch}.rope.freq_base`, 10000)
        .addFloat32(`${arch}.attention.layer_norm_rms_epsilon`, 1e-5)
        .addUint32(`${arch}.vocab_size`, nVocab)
        .addString("tokenizer.ggml.model", "llama")
        .addStringArray("tokenizer.ggml.tokens", vocab.tokens)
        .addFloat32Array("tokenizer.ggml.scores", vocab.scores)
        .addInt32Array("tokenizer.ggml.token_type", vocab.types)
        .addUint32("tokenizer.ggml.bos_token_id", BOS_ID)
        .addUint32("tokenizer.ggml.eos_token_id", EOS_ID)
        .addUint32("tokenizer.ggml.unknown_token_id", UNK_ID)
        .addBool("tokenizer.ggml.add_bos_token", true)
        .addBool("tokenizer.ggml.add_eos_token", false);
    if (chatTemplate !== undefined) w.addString("tokenizer.chat_template", chatTemplate);
    // M-RoPE sections (time, height, width, unused) in rotary pairs: they sum to half the head size.
    if (arch === "qwen2vl") w.addInt32Array("qwen2vl.rope.dimension_sections", [headDim / 8, (headDim * 3) / 16, (headDim * 3) / 16, 0]);

    const F32 = GgmlType.F32;
    const W = WEIGHT_GGML_TYPE[weightType];
    const inStd = (n: number): number => 1 / Math.sqrt(n);
    const embd = matrix(nVocab, nEmbd, 1);
    const eagerId = eosEager ? EOS_ID : eagerToken === undefined ? -1 : vocab.tokens.indexOf(eagerToken);
    if (eagerToken !== undefined && eagerId < 0) throw new Error(`eagerToken ${eagerToken} is not in the vocabulary`);
    if (eagerId >= 0) for (let t = 0; t < nVocab; t++) embd[t * nEmbd] = 50;
    w.addTensor("token_embd.weight", [nEmbd, nVocab], embd, W);
    for (let i = 0; i < nLayer; i++) {
        const p = `blk.${i}.`;
        w.addTensor(p + "attn_norm.weight", [nEmbd], ones(nEmbd), F32)
            .addTensor(p + "attn_q.weight", [nEmbd, nEmbd], matrix(nEmbd, nEmbd, inStd(nEmbd)), W)
            .addTensor(p + "attn_k.weight", [nEmbd, nHeadKv * headDim], matrix(nHeadKv * headDim, nEmbd, inStd(nEmbd)), W)
            .addTensor(p + "attn_v.weight", [nEmbd, nHeadKv * headDim], matrix(nHeadKv * headDim, nEmbd, inStd(nEmbd)), W)
            .addTensor(p + "attn_output.weight", [nEmbd, nEmbd], matrix(nEmbd, nEmbd, inStd(nEmbd)), W)
            .addTensor(p + "ffn_norm.weight", [nEmbd], ones(nEmbd), F32)
            .addTensor(p + "ffn_gate.weight", [nEmbd, nFf], matrix(nFf, nEmbd, inStd(nEmbd)), W)
            .addTensor(p + "ffn_up.weight", [nEmbd, nFf], matrix(nFf, nEmbd, inStd(nEmbd)), W)
            .addTensor(p + "ffn_down.weight", [nFf, nEmbd], matrix(nEmbd, nFf, inStd(nFf)), W);
    }
    w.addTensor("output_norm.weight", [nEmbd], ones(nEmbd), F32);
    const output = matrix(nVocab, nEmbd, 2 / Math.sqrt(nEmbd));
    output.fill(0, 0, vocab.firstNormalId * nEmbd);
    if (eagerId >= 0) output[eagerId * nEmbd] = 5;
    w.addTensor("output.weight", [nEmbd, nVocab], output, W);
    w.write(path);
}
