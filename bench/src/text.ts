// Deterministic prompt text: words the generated models' vocabulary holds whole, so one word is
// about one token on both sides.
const WORDS = `the of and to in is you that it he was for on are as with his they at be this have from or
one had by word but not what all were we when your can said there use an each which she do how their if
will up other about out many then them these so some her would make like him into time has look two more
write go see number no way could people my than first water been call who its now find long down day did
get come made may part over new sound take only little work know place year live me back give most very
after thing our just name good sentence man think say great where help through much before line right too
mean old any same tell boy follow came want show also around form three small set put end does another well
large must big even such because turn here why ask went men read need land different home us move try kind
hand picture again change off play spell air away animal house point page letter mother answer found study
still learn should world`.split(/\s+/);

/** `n` words chosen by a seeded generator: the same (n, seed) always gives the same text. */
export function words(n: number, seed: number): string {
  let a = (seed * 2654435761) >>> 0;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out.push(WORDS[(a >>> 8) % WORDS.length] ?? "the");
  }
  return out.join(" ");
}

/** A ChatML user message followed by the assistant header, as the peer's raw prompt. */
export function chatmlTurn(user: string): string {
  return `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;
}

/** The ChatML text that closes an assistant reply. */
export function chatmlReplyEnd(reply: string): string {
  return `${reply}<|im_end|>\n`;
}
