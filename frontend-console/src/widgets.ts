// The embeddable widgets, as meterflow serves them (/embed/meterflow.js): the console shows
// the very widgets a customer sees, loaded once, on the pages that use them.
let loading: Promise<unknown> | undefined;

export function loadWidgets(): Promise<unknown> {
  const url = "/embed/meterflow.js";
  loading ??= import(/* @vite-ignore */ url);
  return loading;
}
