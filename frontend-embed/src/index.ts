// meterflow's embeddable widgets. Importing this module defines the custom elements.
export { MeterflowInvoice } from "./invoice";
export { MeterflowUsage } from "./usage";
export { MeterflowWallet } from "./wallet";
export { MeterflowAlerts } from "./alerts";
export { TokenError, GraphQLRequestError } from "./connection";
