/**
 * JSON Schema `pattern`s are ECMA-262 regular expressions (with the `u` flag); Brigade matches
 * them on RE2, whose syntax and classes differ in a few places. This rewrites a pattern so
 * RE2 gives it its JavaScript meaning: `\s` and `\S` are JavaScript's Unicode whitespace (RE2's
 * are ASCII), `.` excludes every JavaScript line terminator (RE2's excludes `\n` only),
 * `\u0041`-style escapes, `\u{…}`, `\cX` and `\0` become `\x{…}`, and long Unicode property names
 * (`\p{Letter}`, `\p{Script=Greek}`) become RE2's short ones. What RE2 cannot do in linear time
 * (back-references, look-around) is left for RE2 to refuse.
 */

/** JavaScript's `\s`, as the contents of an RE2 character class. */
const whitespace =
  '\\t\\n\\x{0b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}';

/** JavaScript's `.` without the `s` flag: anything but a line terminator. */
const anyButLineTerminator = '[^\\n\\r\\x{2028}\\x{2029}]';

/** Long Unicode general-category names ECMA-262 accepts, to RE2's short ones. */
const categories: Readonly<Record<string, string>> = {
  Letter: 'L',
  Cased_Letter: 'L',
  Uppercase_Letter: 'Lu',
  Lowercase_Letter: 'Ll',
  Titlecase_Letter: 'Lt',
  Modifier_Letter: 'Lm',
  Other_Letter: 'Lo',
  Mark: 'M',
  Combining_Mark: 'M',
  Nonspacing_Mark: 'Mn',
  Spacing_Mark: 'Mc',
  Enclosing_Mark: 'Me',
  Number: 'N',
  Decimal_Number: 'Nd',
  digit: 'Nd',
  Letter_Number: 'Nl',
  Other_Number: 'No',
  Punctuation: 'P',
  punct: 'P',
  Connector_Punctuation: 'Pc',
  Dash_Punctuation: 'Pd',
  Open_Punctuation: 'Ps',
  Close_Punctuation: 'Pe',
  Initial_Punctuation: 'Pi',
  Final_Punctuation: 'Pf',
  Other_Punctuation: 'Po',
  Symbol: 'S',
  Math_Symbol: 'Sm',
  Currency_Symbol: 'Sc',
  Modifier_Symbol: 'Sk',
  Other_Symbol: 'So',
  Separator: 'Z',
  Space_Separator: 'Zs',
  Line_Separator: 'Zl',
  Paragraph_Separator: 'Zp',
  Other: 'C',
  Control: 'Cc',
  cntrl: 'Cc',
  Format: 'Cf',
  Surrogate: 'Cs',
  Private_Use: 'Co',
  Unassigned: 'Cn',
};

/** An unsupported construct, reported like RE2's own syntax errors. */
export class PatternError extends Error {}

const hex = (codePoint: number) => `\\x{${codePoint.toString(16)}}`;

function property(name: string): string {
  const [key, value] = name.includes('=') ? name.split('=', 2) : [undefined, name];
  if (value === undefined || value === '') throw new PatternError(`invalid property \\p{${name}}`);
  if (key === undefined || key === 'General_Category' || key === 'gc')
    return categories[value] ?? value;
  if (key === 'Script' || key === 'sc' || key === 'Script_Extensions' || key === 'scx')
    return value;
  throw new PatternError(`unsupported property \\p{${name}}`);
}

/** The `\u` escape (four hex digits or `{…}`) at `index`, as a code point and its length. */
function unicodeEscape(pattern: string, index: number): { codePoint: number; length: number } {
  if (pattern[index + 1] === '{') {
    const end = pattern.indexOf('}', index + 2);
    const digits = end < 0 ? '' : pattern.slice(index + 2, end);
    if (!/^[0-9a-fA-F]{1,6}$/.test(digits)) throw new PatternError('invalid \\u{…} escape');
    return { codePoint: Number.parseInt(digits, 16), length: end - index + 1 };
  }
  const digits = pattern.slice(index + 1, index + 5);
  if (!/^[0-9a-fA-F]{4}$/.test(digits)) throw new PatternError('invalid \\u escape');
  const codePoint = Number.parseInt(digits, 16);
  // A surrogate pair written as two escapes is one code point under the `u` flag.
  const low = /^\\u(d[c-f][0-9a-f]{2})/i.exec(pattern.slice(index + 5));
  if (codePoint >= 0xd800 && codePoint <= 0xdbff && low?.[1] !== undefined) {
    const second = Number.parseInt(low[1], 16);
    return { codePoint: 0x10000 + ((codePoint - 0xd800) << 10) + (second - 0xdc00), length: 11 };
  }
  return { codePoint, length: 5 };
}

/** Rewrites an ECMA-262 (`u`) pattern into RE2 syntax with the same meaning. */
export function toRe2Pattern(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let index = 0; index < pattern.length; index++) {
    const char = pattern[index] as string;
    if (char === '\\') {
      const next = pattern[index + 1];
      if (next === undefined) throw new PatternError('trailing backslash');
      if (next === 'u') {
        const unicode = unicodeEscape(pattern, index + 1);
        out += hex(unicode.codePoint);
        index += unicode.length;
      } else if (next === 's') {
        out += inClass ? whitespace : `[${whitespace}]`;
        index += 1;
      } else if (next === 'S') {
        if (inClass) throw new PatternError('\\S inside a character class is not supported');
        out += `[^${whitespace}]`;
        index += 1;
      } else if ((next === 'p' || next === 'P') && pattern[index + 2] === '{') {
        const end = pattern.indexOf('}', index + 3);
        if (end < 0) throw new PatternError('unterminated \\p{…}');
        out += `\\${next}{${property(pattern.slice(index + 3, end))}}`;
        index = end;
      } else if (next === 'c' && /[a-zA-Z]/.test(pattern[index + 2] ?? '')) {
        out += hex((pattern.charCodeAt(index + 2) as number) % 32);
        index += 2;
      } else if (next === '0' && !/[0-9]/.test(pattern[index + 2] ?? '')) {
        out += hex(0);
        index += 1;
      } else {
        out += `\\${next}`;
        index += 1;
      }
    } else if (inClass) {
      if (char === ']') inClass = false;
      out += char;
    } else if (char === '[') {
      inClass = true;
      out += char;
      // A `]` right after `[` or `[^` is a literal in RE2 but ends an empty class in
      // JavaScript; `[]` and `[^]` are rare enough to refuse.
      const first = pattern[index + 1] === '^' ? index + 2 : index + 1;
      if (pattern[first] === ']') throw new PatternError('empty character class');
    } else if (char === '.') out += anyButLineTerminator;
    else out += char;
  }
  return out;
}
