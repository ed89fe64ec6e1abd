"use strict";
window.addEventListener("load", function () {
  if (typeof SwaggerUIBundle === "undefined") return;
  SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: false });
});
