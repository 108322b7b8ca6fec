import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './index.ts';

/** Runs `load` and returns the {@link ConfigError} it throws; fails the test if it does not. */
function configErrorOf(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

const withOrigins = (origins: string[]) => () =>
  loadConfig({ env: {}, file: { server: { cors: { origins } } } });

/** `server.cors.origins` are compared with a browser's `Origin` header as strings. */
describe('server.cors.origins', () => {
  it('refuses every value no Origin header can ever equal, each under its own path', () => {
    const refused = [
      'not a url',
      '*',
      'http://a.test/path',
      'https://a.test/',
      'https://A.test',
      'https://a.test:443',
      'a.test',
      'https://a.test?x=1',
      '',
    ];
    const error = configErrorOf(withOrigins(refused));
    expect(error.issues.map((issue) => issue.path)).toEqual(
      refused.map((_, index) => `server.cors.origins.${index}`),
    );
    expect(error.issues[3]?.message).toContain("'https://a.test'");
  });

  it('accepts origins as browsers send them', () => {
    const origins = [
      'https://app.example.com',
      'http://localhost:5173',
      'http://127.0.0.1:8080',
      'https://[::1]:3000',
      'chrome-extension://abcdefghijklmnop',
    ];
    expect(withOrigins(origins)().server.cors.origins).toEqual(origins);
  });
});
