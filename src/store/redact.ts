/** A URL fit for a log line: no user, password or query (where presigned signatures live). */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return raw.replace(/\/\/[^/@]*@/, '//').replace(/[?#].*$/, '');
  }
}
