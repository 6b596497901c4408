// Starts Swagger UI on the API reference page (GET /api/docs). Kept out of the HTML so the
// page's Content-Security-Policy needs no inline script.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No badge from the public validator: the page talks to this app only.
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
