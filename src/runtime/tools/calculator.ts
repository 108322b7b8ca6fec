/**
 * Evaluates an arithmetic expression: numbers, + - * / % ^, parentheses and unary minus.
 * A small recursive-descent parser: no `eval`, no identifiers, bounded length.
 */
export function evaluateExpression(expression: string): number {
  if (expression.length > 500) throw new Error('expression too long');
  const tokens = expression.match(/\d+(?:\.\d+)?(?:e[+-]?\d+)?|[-+*/%^()]|\S/gi) ?? [];
  let position = 0;
  const peek = () => tokens[position];
  const take = () => tokens[position++];
  function primary(): number {
    const token = take();
    if (token === '(') {
      const value = sum();
      if (take() !== ')') throw new Error('missing )');
      return value;
    }
    if (token === '-') return -primary();
    if (token === '+') return primary();
    if (token !== undefined && /^\d/.test(token)) return Number(token);
    throw new Error(`unexpected ${token ?? 'end of expression'}`);
  }
  function power(): number {
    const base = primary();
    if (peek() === '^') {
      take();
      return base ** power();
    }
    return base;
  }
  function product(): number {
    let value = power();
    for (let token = peek(); token === '*' || token === '/' || token === '%'; token = peek()) {
      take();
      const right = power();
      value = token === '*' ? value * right : token === '/' ? value / right : value % right;
    }
    return value;
  }
  function sum(): number {
    let value = product();
    for (let token = peek(); token === '+' || token === '-'; token = peek()) {
      take();
      const right = product();
      value = token === '+' ? value + right : value - right;
    }
    return value;
  }
  const result = sum();
  if (position !== tokens.length) throw new Error(`unexpected ${tokens[position]}`);
  if (!Number.isFinite(result)) throw new Error('result is not a finite number');
  return result;
}
