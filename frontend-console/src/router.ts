// History routing under /console/: /console/<view>[/<id>][?filters]. meterflow answers every
// /console/* path with the app, so a deep link or a reload lands on the same view and filter.
export const BASE = "/console";

export interface Route {
  view: string;
  id: string;
  params: URLSearchParams;
}

export function current(): Route {
  const rest = window.location.pathname.startsWith(BASE)
    ? window.location.pathname.slice(BASE.length)
    : "";
  const [view = "", ...id] = rest.split("/").filter(Boolean);
  return {
    view: view || "customers",
    id: id.map(decodeURIComponent).join("/"),
    params: new URLSearchParams(window.location.search),
  };
}

export function href(view: string, id = "", params?: Record<string, string>): string {
  let path = `${BASE}/${view}`;
  if (id) path += `/${encodeURIComponent(id)}`;
  const query = new URLSearchParams(
    Object.entries(params ?? {}).filter(([, value]) => value !== ""),
  ).toString();
  return query ? `${path}?${query}` : path;
}

/** Go somewhere (a new history entry), or only record the filters (replace: no new entry). */
export function navigate(url: string, replace = false): void {
  if (url === window.location.pathname + window.location.search) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event("mf-route"));
}

/** Keep the current view's filters in the URL without a new history entry. */
export function setParams(params: Record<string, string>): void {
  const route = current();
  navigate(href(route.view, route.id, params), true);
}

/** Links inside the console navigate without reloading the page. */
export function interceptLinks(root: HTMLElement): void {
  root.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
    const anchor = (event.target as Element).closest?.("a");
    const target = anchor?.getAttribute("href");
    if (!anchor || !target || !target.startsWith(`${BASE}/`) || anchor.target) return;
    event.preventDefault();
    navigate(target);
  });
}
