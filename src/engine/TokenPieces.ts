/** Each token's own text and bytes, as llama.cpp's token-to-piece gives them, for reporting tokens and their alternatives. */
import type { LlamaModel, Token } from "node-llama-cpp";

export interface TokenPiece {
  text: string;
  bytes: number[];
}

const encoder = new TextEncoder();
/** SentencePiece byte-fallback tokens are stored as `<0xNN>`. */
const byteToken = /^<0x([0-9A-Fa-f]{2})>$/;

/** Made once per loaded model; pieces are computed on first use and kept (at most one per vocabulary entry). */
export class TokenPieces {
  private readonly pieces = new Map<Token, TokenPiece>();
  /** A token that renders as "" in front of another, so llama.cpp does not strip that one's leading space. */
  private readonly blank?: Token;

  constructor(private readonly model: LlamaModel) {
    const candidates = [model.tokens.bos, model.tokens.eos];
    this.blank = candidates.find((t): t is Token => t != null && model.detokenize([t], false) === "");
  }

  get(token: Token): TokenPiece {
    let piece = this.pieces.get(token);
    if (!piece) {
      piece = this.compute(token);
      this.pieces.set(token, piece);
    }
    return piece;
  }

  private compute(token: Token): TokenPiece {
    if (this.model.getTokenAttributes(token).byte) {
      // The text alone would be U+FFFD for half a character; the vocabulary entry has the byte itself.
      const match = byteToken.exec(tokenString(this.model, token));
      if (match) {
        const byte = Number.parseInt(match[1]!, 16);
        return { text: byte < 0x80 ? String.fromCharCode(byte) : "", bytes: [byte] };
      }
    }
    const text = this.blank === undefined ? this.model.detokenize([token], false) : this.model.detokenize([this.blank, token], false);
    if (text.includes("\ufffd") && this.model.vocabularyType === "bpe") {
      // A GPT-2-style token holding part of a character: its vocabulary entry spells its bytes.
      const bytes = byteLevelBytes(tokenString(this.model, token));
      if (bytes) return { text: decoder.decode(new Uint8Array(bytes)).replace(/\ufffd+$/, ""), bytes };
    }
    return { text, bytes: Array.from(encoder.encode(text)) };
  }
}

const decoder = new TextDecoder();

/** GPT-2's byte-to-character table, inverted: printable bytes stand for themselves, the others for U+0100 onwards. */
const byteOfChar = (() => {
  const table = new Map<number, number>();
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
    table.set(printable ? byte : next++, byte);
  }
  return table;
})();

function byteLevelBytes(entry: string): number[] | undefined {
  const bytes: number[] = [];
  for (const char of entry) {
    const byte = byteOfChar.get(char.codePointAt(0)!);
    if (byte === undefined) return undefined;
    bytes.push(byte);
  }
  return bytes;
}

/** The vocabulary entry of a token. node-llama-cpp keeps its accessor private; it is the only way to a byte token's value. */
function tokenString(model: LlamaModel, token: Token): string {
  return (model as unknown as { _model: { getTokenString(token: number): string } })._model.getTokenString(token);
}
