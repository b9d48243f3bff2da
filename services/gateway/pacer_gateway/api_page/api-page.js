// Swagger UI on the gateway's own OpenAPI document. A file, not an inline script: the page's policy runs none.
// Paths are relative to /docs, so the page also works behind a proxy that serves the gateway under a prefix.
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  // Swagger UI would otherwise send the document to an outside validator for a badge.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
