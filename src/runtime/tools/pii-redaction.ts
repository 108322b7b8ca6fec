/** The kinds of personal data the output guard can redact. */
export const piiKinds = ['email', 'phone', 'iban', 'card', 'ssn'] as const;

/** A kind of personal data. */
export type PiiKind = (typeof piiKinds)[number];

/**
 * An IBAN as written: two capital letters, two check digits and 11–30 capitals or digits, in
 * one piece or printed in groups of four separated by single spaces. Lower-case IBANs are not
 * matched (the stream guard relies on that: see {@link piiTailStart}).
 */
const ibanShape =
  /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?![A-Za-z0-9])/g;

/** 13–19 digits, optionally grouped by single spaces or dashes, starting 2–6 (card networks). */
const cardShape = /(?<![\w+.,-])(?<!\d[ -])[2-6](?:[ -]?\d){12,18}(?![\w]|[ -]\d|[.,]\d)/g;

/** US social security number, dashed: not area 000, 666 or 9xx, not group 00, not serial 0000. */
const ssnShape = /(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-]|[.,]\d)/g;

const emailShape =
  /(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;

/**
 * Phone numbers: E.164-like (`+` and 8–15 digits, grouped by spaces, dots, dashes or a
 * parenthesised area code), a parenthesised area code (`(415) 555-2671`), the North American
 * `415-555-2671` / `415.555.2671` / `415 555 2671`, and national numbers with a trunk `0`
 * and 9–12 digits in groups (`030 1234 5678`, `01 23 45 67 89`). Not matched: numbers
 * without separators, amounts (`1,234,567.89`), dates (`2024-05-06`, `06/05/2024`), times.
 */
const phoneShapes: readonly RegExp[] = [
  /(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}(?![\w]|[.,:]\d)/g,
  /(?<![\w)])\(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,5}(?![\w]|[ .,:-]\d)/g,
  /(?<![\w.,/-])(?<!\d[ ])\d{3}([-. ])\d{3}\1\d{4}(?![\w]|[ .,:/-]\d)/g,
  /(?<![\w.,/:-])(?<!\d[ ])0\d{1,4}(?:[ -]\d{2,8}){1,4}(?![\w]|[ .,:/-]\d)/g,
];

const digitsOf = (text: string) => text.replace(/\D/g, '');

/** Whether `digits` passes the Luhn check (payment card numbers). */
export function isLuhnValid(digits: string): boolean {
  let sum = 0;
  for (let index = 0; index < digits.length; index += 1) {
    let digit = Number(digits[digits.length - 1 - index]);
    if (index % 2 === 1) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** IBAN lengths by country (the SWIFT IBAN registry). */
const ibanLengths: Readonly<Record<string, number>> = Object.fromEntries(
  (
    'AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 ' +
    'EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 ' +
    'IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MR27 MT31 MU30 ' +
    'NL18 NO15 PK24 PL28 PS29 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 ST25 SV28 TL23 TN24 ' +
    'TR26 UA29 VA22 VG24 XK20'
  )
    .split(' ')
    .map((entry) => [entry.slice(0, 2), Number(entry.slice(2))]),
);

/** The countries that have IBANs, with the length of theirs. */
export function ibanLength(country: string): number | undefined {
  return ibanLengths[country];
}

/**
 * Whether `text` (spaces allowed) is an IBAN: a country that has them, that country's length,
 * and the mod-97 check (ISO 13616).
 */
export function isValidIban(text: string): boolean {
  const compact = text.replace(/ /g, '');
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(compact)) return false;
  if (ibanLengths[compact.slice(0, 2)] !== compact.length) return false;
  const rearranged = `${compact.slice(4)}${compact.slice(0, 4)}`;
  let remainder = 0;
  for (const character of rearranged) {
    const value = /\d/.test(character) ? character : String(character.charCodeAt(0) - 55);
    for (const digit of value) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder === 1;
}

/**
 * The valid IBAN at the start of a printed candidate: the whole, or without trailing groups
 * (a capitalised word after an IBAN whose length is a multiple of four looks like a group).
 * The country's length decides, so an invalid IBAN is not redacted by a lucky prefix.
 */
function redactIban(candidate: string, count: () => void): string {
  const groups = candidate.split(' ');
  for (let size = groups.length; size >= 1; size -= 1) {
    const head = groups.slice(0, size).join(' ');
    if (!isValidIban(head)) continue;
    count();
    const rest = groups.slice(size).join(' ');
    return rest === '' ? '[redacted:iban]' : `[redacted:iban] ${rest}`;
  }
  return candidate;
}

function looksLikeDate(candidate: string): boolean {
  return /^\d{1,4}[-/. ]\d{1,2}[-/. ]\d{2,4}$/.test(candidate);
}

function redactNumbers(text: string, options: { kinds: ReadonlySet<PiiKind>; count: () => void }) {
  const { kinds, count } = options;
  let result = text;
  if (kinds.has('card'))
    result = result.replace(cardShape, (match) => {
      const digits = digitsOf(match);
      if (!isLuhnValid(digits) || /^(\d)\1+$/.test(digits)) return match;
      count();
      return '[redacted:card]';
    });
  if (kinds.has('ssn'))
    result = result.replace(ssnShape, () => {
      count();
      return '[redacted:ssn]';
    });
  if (kinds.has('phone'))
    for (const pattern of phoneShapes)
      result = result.replace(pattern, (match) => {
        const digits = digitsOf(match).length;
        const international = match.startsWith('+');
        if (digits < (international ? 8 : 9) || digits > (international ? 15 : 12)) return match;
        if (looksLikeDate(match)) return match;
        count();
        return '[redacted:phone]';
      });
  return result;
}

/**
 * Replaces the personal data of `kinds` in `text` with `[redacted:<kind>]` and counts the
 * replacements. IBANs (mod-97 checked) are found first: an IBAN-shaped string that fails the
 * check is left as written and never mistaken for a card or phone number. Card numbers must
 * pass the Luhn check, so a random long number is rarely taken for one.
 */
export function redactPii(
  text: string,
  kinds: readonly PiiKind[],
): { text: string; redacted: number } {
  if (kinds.length === 0) return { text, redacted: 0 };
  const wanted = new Set(kinds);
  let redacted = 0;
  const count = () => {
    redacted += 1;
  };
  let result = text;
  if (wanted.has('email'))
    result = result.replace(emailShape, () => {
      count();
      return '[redacted:email]';
    });
  if (wanted.has('iban') || wanted.has('card') || wanted.has('phone') || wanted.has('ssn')) {
    // IBAN-shaped pieces at odd indexes; the numeric patterns run only between them.
    const parts = result.split(new RegExp(`(${ibanShape.source})`, 'g'));
    result = parts
      .map((part, index) =>
        index % 2 === 1
          ? wanted.has('iban')
            ? redactIban(part, count)
            : part
          : redactNumbers(part, { kinds: wanted, count }),
      )
      .join('');
  }
  return { text: result, redacted };
}

/**
 * Where the stream guard must stop releasing `text` so that a phone, card or IBAN number is
 * never cut in two: the start of the run of words at its end (separated by whitespace) made
 * of digits, capitals and `+()./-` only, when that run contains a digit; else `text.length`.
 * Numbers that contain spaces are made of such words, and a word with a lower-case letter
 * (or other punctuation) cannot continue one.
 */
export function piiTailStart(text: string): number {
  const match = /(?<!\S)(?:[0-9A-Z+()./-]+\s+)*[0-9A-Z+()./-]*$/.exec(text);
  if (match === null || !/\d/.test(match[0])) return text.length;
  return match.index;
}
