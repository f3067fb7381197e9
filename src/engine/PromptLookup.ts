/**
 * Prompt-lookup speculative decoding: node-llama-cpp's `InputLookupTokenPredictor` (no draft model) behind a switch the
 * decode loop sets per request, with a draft length that follows how many predictions the model accepted, and, in
 * `auto`, only while drafts measurably give tokens faster than single steps.
 *
 * node-llama-cpp ties a predictor to a sequence for the sequence's life (`getSequence({ tokenPredictor })`), so every
 * sequence of a speculating model gets one of these, and a request that must not speculate (penalties, DRY) leaves it
 * switched off: it then predicts nothing and the sequence decodes one token per step.
 */
import type {
  InputLookupTokenPredictor,
  LlamaContextSequence,
  LlamaModel,
  SequenceEvaluateOptions,
  Token,
  TokenPredictor,
} from "node-llama-cpp";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";

export type SpeculativeSetting = "auto" | "on" | "off";

/**
 * The policy, in numbers. The bench's scenario 6 (`bun run bench -- --scenarios 6`) prints tokens/s, acceptance and
 * speed-up per workload for `auto`, `on` and `off`, which is what confirms or moves them.
 * - `minModelBytes`: `auto` speculates only on models at least this big. Below it a decode step is so cheap that the
 *   extra sampling round trip per predicted token costs more than the tokens it saves (the issue's stories260K test:
 *   0.5x). The same size below which a model gets one thread (LoadedModel).
 * - `pattern`: tokens of the generated text that must match the prompt before its continuation is predicted; one
 *   token matches almost anywhere and is mostly refuted. The longest match wins, up to `pattern.max` tokens, past which
 *   matches tie and the earliest one wins (in a repeated passage, the copy with the most text after it).
 * - `draft`: tokens predicted per step: `draft.start`, doubling while every prediction is accepted (up to `draft.max`),
 *   one more than were accepted after a refuted one.
 * - `auto` measures: a step that decodes a draft costs more than a single-token step (on a 2-core EPYC, a 135M model:
 *   10 ms for 1 token, 27 ms for 2, then ~2.2 ms per token more), so a draft pays only when enough of it is accepted.
 *   After the prompt, `baselineSteps` single steps give the time per token without drafts; once `judgeSteps` draft
 *   steps have run, drafts continue only while their time per generated token is below `maxCostRatio` of that. If
 *   not, predictions pause for `pauseTokens` generated tokens (doubling at each pause; the single steps meanwhile renew
 *   the baseline), then drafts are tried again.
 * - `auto` drafts only while the request is the only one generating on its context: with others, every step already
 *   carries several sequences' tokens, and a draft would slow theirs down too.
 */
export const promptLookupPolicy = {
  minModelBytes: 64 * 1024 ** 2,
  pattern: { min: 2, max: 8 },
  draft: { start: 4, max: 32 },
  baselineSteps: 3,
  judgeSteps: 2,
  maxCostRatio: 0.95,
  pauseTokens: 128,
} as const;

/** Whether sequences of this model get a predictor: `on` always, `auto` on models big enough for it to pay. */
export function speculates(setting: SpeculativeSetting, model: LlamaModel): boolean {
  return setting === "on" || (setting === "auto" && model.size >= promptLookupPolicy.minModelBytes);
}

/** What one request did with its predictions. */
export interface SpeculationStats {
  /** Predicted tokens the model evaluated. */
  predicted: number;
  /** Of those, the ones it generated too (each saved a decode step). */
  accepted: number;
}

/** Time and tokens of a run of decode steps. */
class StepTimes {
  steps = 0;
  ms = 0;
  tokens = 0;

  add(ms: number, tokens: number): void {
    this.steps++;
    this.ms += ms;
    this.tokens += tokens;
  }

  get msPerToken(): number {
    return this.ms / this.tokens;
  }
}

export class PromptLookupPredictor implements TokenPredictor {
  private readonly lookup: InputLookupTokenPredictor;
  private enabled = false;
  private disposed = false;
  private sequence?: LlamaContextSequence;
  /** The sequence's prediction counters at the last look, to tell what happened to the last draft. */
  private seen = { validated: 0, refuted: 0 };
  private draft: number = promptLookupPolicy.draft.start;
  /** The step in flight since the last `predictTokens` call: its draft length (-1: a step not to time), and start. */
  private stepDraft = -1;
  private stepStartedAt = 0;
  private promptStep = false;
  private request: SpeculationStats = { predicted: 0, accepted: 0 };
  private single = new StepTimes();
  private drafted = new StepTimes();
  private pausedFor = 0;
  private pause: number = promptLookupPolicy.pauseTokens;

  constructor(
    nlc: NodeLlamaCppModule,
    private readonly setting: SpeculativeSetting,
    /** Whether this sequence is the only one of its context generating now (`auto` drafts only then). */
    private readonly alone: () => boolean = () => true,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.lookup = new nlc.InputLookupTokenPredictor({
      patternLength: { min: promptLookupPolicy.pattern.min, max: promptLookupPolicy.pattern.max },
      predictionLength: { max: promptLookupPolicy.draft.max },
    });
  }

  /** Switches predictions on for one request whose prompt is `prompt`; `end()` switches them off again. */
  begin(prompt: readonly Token[]): void {
    if (this.disposed) return;
    this.lookup.updateInputTokens(prompt as Token[]);
    this.enabled = true;
    this.draft = promptLookupPolicy.draft.start;
    this.stepDraft = -1;
    this.request = { predicted: 0, accepted: 0 };
    this.single = new StepTimes();
    this.drafted = new StepTimes();
    this.pausedFor = 0;
    this.pause = promptLookupPolicy.pauseTokens;
  }

  /** Switches predictions off and returns what the request did with them. */
  end(): SpeculationStats {
    this.settle(Number.NaN);
    this.enabled = false;
    if (!this.disposed) this.lookup.updateInputTokens([]);
    return this.request;
  }

  reset(params: { targetSequence: LlamaContextSequence; stateTokens: Token[]; evaluateOptions: Readonly<SequenceEvaluateOptions> }) {
    this.sequence = params.targetSequence;
    this.seen = { ...params.targetSequence.tokenPredictions };
    this.stepDraft = -1;
    this.promptStep = true;
    return this.lookup.reset(params);
  }

  pushTokens(tokens: Token[]): void {
    this.lookup.pushTokens(tokens);
    if (this.pausedFor > 0) this.pausedFor = Math.max(0, this.pausedFor - tokens.length);
  }

  /** Called by node-llama-cpp before each decode step that has no validated predictions left to hand out. */
  predictTokens(): Token[] {
    if (!this.enabled) return [];
    const now = this.clock();
    this.settle(now);
    const draft = this.wantsDraft() ? this.lookup.predictTokens().slice(0, this.draft) : [];
    // The first step after a reset evaluates the prompt too, and a step shared with other sequences is theirs as much
    // as this one's: neither is a step to time.
    this.stepDraft = this.promptStep || (this.setting === "auto" && !this.alone()) ? -1 : draft.length;
    this.promptStep = false;
    this.stepStartedAt = now;
    return draft;
  }

  stop(untilPredictionsExhausted?: boolean): void {
    this.lookup.stop(untilPredictionsExhausted);
  }

  updateInputTokens(tokens: Token[]): void {
    this.lookup.updateInputTokens(tokens);
  }

  dispose(): void {
    this.enabled = false;
    this.disposed = true;
    this.lookup.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private wantsDraft(): boolean {
    if (this.setting === "on") return true;
    return this.pausedFor === 0 && this.single.steps >= promptLookupPolicy.baselineSteps && this.alone();
  }

  /**
   * Accounts for the step that just ended (what the sequence's counters say happened to its draft, and how long it
   * took per generated token), adjusts the draft length, and in `auto` pauses drafts that do not pay.
   */
  private settle(now: number): void {
    const counters = this.sequence?.tokenPredictions;
    if (!counters) return;
    const accepted = counters.validated - this.seen.validated;
    const refuted = counters.refuted - this.seen.refuted;
    this.seen = { validated: counters.validated, refuted: counters.refuted };
    this.request.predicted += accepted + refuted;
    this.request.accepted += accepted;
    const drafted = this.stepDraft;
    if (drafted > 0) {
      const { draft } = promptLookupPolicy;
      this.draft = refuted === 0 && accepted >= drafted ? Math.min(draft.max, this.draft * 2) : Math.max(1, accepted + 1);
    }
    if (this.setting !== "auto" || drafted < 0 || Number.isNaN(now)) return;
    // The step gave its sampled token plus the accepted predictions (handed out since without a decode).
    if (drafted === 0) this.single.add(now - this.stepStartedAt, 1);
    else this.drafted.add(now - this.stepStartedAt, 1 + accepted);
    if (this.drafted.steps < promptLookupPolicy.judgeSteps) return;
    if (this.drafted.msPerToken > promptLookupPolicy.maxCostRatio * this.single.msPerToken) {
      this.pausedFor = this.pause;
      this.pause *= 2;
      this.draft = promptLookupPolicy.draft.start;
      this.single = new StepTimes();
    }
    this.drafted = new StepTimes();
  }
}
