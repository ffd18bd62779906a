// Numbers, money and dates with Intl, in the browser's locale (money in its own currency).
export function money(amount: string | number | null | undefined, currency: string): string {
  if (amount === null || amount === undefined || amount === "") return "—";
  const value = Number(amount);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
  } catch {
    return `${number(value)} ${currency}`; // a credit unit, not ISO 4217
  }
}

export function number(amount: string | number | null | undefined, digits = 6): string {
  if (amount === null || amount === undefined || amount === "") return "—";
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }).format(Number(amount));
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" }).format(
    new Date(iso),
  );
}

export function date(iso: string | null | undefined): string {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }).format(new Date(iso));
}

export function percent(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(undefined, {
    style: "percent",
    maximumFractionDigits: 1,
    signDisplay: "exceptZero",
  }).format(Number(value) / 100);
}
