/** The client's version: the server release whose API it speaks (package.json says the same). */
export const VERSION = "0.1.0";
