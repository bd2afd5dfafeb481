import { LABEL, render } from "./render.js";

document.getElementById("app").textContent = render(LABEL);
document.title = LABEL;
