import { header } from "./components/header.js";

document.body.innerHTML = header("syncd demo");
