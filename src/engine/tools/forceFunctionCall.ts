/**
 * A view of a chat wrapper that makes LlamaChat start the model's turn in function-call mode: the function name and
 * then its arguments are generated under grammars, so even a model that never calls by itself makes a valid call.
 * It uses LlamaChat's own `noPrefixTrigger: {type: "functionCall"}` mechanism (as node-llama-cpp's MuseChatWrapper does).
 */
import type { ChatModelFunctions, ChatWrapper, ChatWrapperGeneratedPrefixTriggersContextState, LlamaText } from "node-llama-cpp";
import type { NodeLlamaCppModule } from "../nodeLlamaCpp.ts";

/** `documented`: the tools the prompt describes (LlamaChat passes only the callable ones, which may be fewer). */
export function forceFunctionCall(nlc: NodeLlamaCppModule, base: ChatWrapper, documented: ChatModelFunctions): ChatWrapper {
  // Every method and setting of `base`, with our generateContextState.
  const forced = Object.create(base) as ChatWrapper;
  forced.generateContextState = (options) => {
    const state = base.generateContextState({
      ...options,
      availableFunctions: documented,
    }) as ChatWrapperGeneratedPrefixTriggersContextState & {
      ignoreStartText?: LlamaText[];
    };
    // Wrappers that open calls with a prefix trigger (Harmony: "<|channel|>commentary to=") need its text injected.
    const trigger = state.prefixTriggers?.find((t) => t.type === "functionCall");
    const inject =
      trigger === undefined
        ? nlc.LlamaText()
        : nlc.LlamaText([trigger.replaceTrigger === false ? trigger.triggers[0]! : "", trigger.inject ?? ""]);
    return {
      contextText: state.contextText,
      stopGenerationTriggers: state.stopGenerationTriggers,
      ignoreStartText: state.ignoreStartText,
      rerender: state.rerender,
      noPrefixTrigger: { type: "functionCall", inject },
      detectFunctionCalls: true,
    } as ChatWrapperGeneratedPrefixTriggersContextState;
  };
  return forced;
}
