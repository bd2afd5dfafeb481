export const header = (title) => `<h1>${title}</h1>`;
