/**
 * The interactive API reference at `/docs`: Scalar's API reference rendering `/openapi.json`.
 * The page loads Scalar's script from its CDN in the reader's browser; the server needs no
 * network access.
 */
export const docsPage = `<!doctype html>
<html>
  <head>
    <title>Brigade API reference</title>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
  </head>
  <body>
    <script id="api-reference" data-url="/openapi.json"></script>
    <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
    <noscript>The machine-readable reference is at <a href="/openapi.json">/openapi.json</a>.</noscript>
  </body>
</html>
`;
