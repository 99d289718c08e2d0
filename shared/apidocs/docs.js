// Starts Swagger UI on /docs (a file, not an inline script: the page's CSP allows only this origin's scripts).
"use strict";

(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // the badge would call an outside service
    persistAuthorization: false, // a pasted token stays in memory, not in the browser's storage
    queryConfigEnabled: false, // no ?url= / ?configUrl= from a link: the page shows this service's API only
  });
})();
