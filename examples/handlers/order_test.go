package exhandlers

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// e2eOrder is the order tasker-core's order fulfillment E2E test submits.
const e2eOrder = `{"customer":{"id":12345,"name":"John Doe","email":"john.doe@example.com"},
	"items":[{"sku":"WIDGET-001","quantity":2,"price":29.99},{"sku":"GADGET-002","quantity":1,"price":149.99}],
	"payment":{"method":"credit_card","token":"tok_1234567890abcdef"},
	"shipping":{"method":"standard","address":{"street":"123 Main St","city":"Anytown","state":"CA","zip":"12345","country":"US"}}}`

func TestOrderFulfillmentE2EOrder(t *testing.T) {
	ctx := withContext(e2eOrder)
	validated := output(t, call(t, "order_fulfillment.validate_order", ctx, withInit(`{"max_order_total":50000}`)))
	assertJSON(t, mustMarshal(t, path(t, validated, "validated_items")), `[
		{"sku":"WIDGET-001","product_name":"Premium Widget A","quantity":2,"unit_price":29.99,"line_total":59.98,"available_stock":100,"category":"widgets"},
		{"sku":"GADGET-002","product_name":"Standard Gadget C","quantity":1,"unit_price":149.99,"line_total":149.99,"available_stock":200,"category":"gadgets"}]`)
	if got := num(t, validated, "order_total"); got != "209.97" {
		t.Errorf("order_total = %s, want 209.97", got)
	}
	if num(t, validated, "customer_id") != "12345" || path(t, validated, "validation_status") != "complete" ||
		path(t, validated, "customer_validated") != true || path(t, validated, "validated_at") != "2026-03-20T15:04:05Z" {
		t.Errorf("validate_order output %s", validated)
	}

	reserved := output(t, call(t, "order_fulfillment.reserve_inventory", ctx, withDep("validate_order", string(validated))))
	resID := path(t, reserved, "reservation_id").(string)
	if !strings.HasPrefix(resID, "RES-1774019045-") {
		t.Errorf("reservation_id %q", resID)
	}
	if num(t, reserved, "total_reserved_value") != "209.97" || num(t, reserved, "items_reserved") != "2" ||
		path(t, reserved, "reservation_status") != "confirmed" || path(t, reserved, "expires_at") != "2026-03-20T15:19:05Z" {
		t.Errorf("reserve_inventory output %s", reserved)
	}
	details := path(t, reserved, "reservation_details").([]any)
	first := details[0].(map[string]any)
	if first["stock_location"] != "WH-EAST-A1" || first["reservation_reference"] != resID+"-WIDGET-001" ||
		details[1].(map[string]any)["stock_location"] != "WH-CENTRAL-C3" {
		t.Errorf("reservation_details %v", details)
	}

	paid := output(t, call(t, "order_fulfillment.process_payment", ctx, withInit(`{"gateway_fee_rate":0.029}`),
		withDep("validate_order", string(validated)), withDep("reserve_inventory", string(reserved))))
	if num(t, paid, "amount_charged") != "209.97" || num(t, paid, "gateway_response", "gateway_fee") != "6.09" ||
		path(t, paid, "payment_status") != "completed" || path(t, paid, "payment_method_used") != "credit_card" ||
		path(t, paid, "gateway_response", "status") != "succeeded" {
		t.Errorf("process_payment output %s", paid)
	}
	if ms, err := strconv.Atoi(num(t, paid, "gateway_response", "processing_time_ms")); err != nil || ms < 50 || ms > 249 {
		t.Errorf("processing_time_ms %d outside 50..249 (%v)", ms, err)
	}
	if !strings.HasPrefix(path(t, paid, "transaction_id").(string), "TXN-") || !strings.HasPrefix(path(t, paid, "payment_id").(string), "PAY-1774019045-") {
		t.Errorf("payment ids %s", paid)
	}

	shipped := output(t, call(t, "order_fulfillment.ship_order", ctx, withDep("validate_order", string(validated)),
		withDep("reserve_inventory", string(reserved)), withDep("process_payment", string(paid))))
	shipmentID := path(t, shipped, "shipment_id").(string)
	if path(t, shipped, "carrier") != "UPS" || path(t, shipped, "service_type") != "UPS Ground" || num(t, shipped, "shipping_cost") != "0.09" ||
		path(t, shipped, "shipping_status") != "label_created" || !strings.HasPrefix(path(t, shipped, "tracking_number").(string), "UPS") ||
		path(t, shipped, "label_url") != "https://labels.ups.com/"+shipmentID+".pdf" {
		t.Errorf("ship_order output %s", shipped)
	}
	// Friday 2026-03-20 + 5 business days = Friday 2026-03-27.
	if got := path(t, shipped, "estimated_delivery"); got != "2026-03-27" {
		t.Errorf("estimated_delivery = %v", got)
	}

	// Same step, same identifiers: nothing random.
	again := output(t, call(t, "order_fulfillment.reserve_inventory", ctx, withDep("validate_order", string(validated))))
	if path(t, again, "reservation_id") != resID {
		t.Error("reservation_id is not deterministic")
	}
}

func TestShippingServices(t *testing.T) {
	cases := []struct {
		method, carrier, service, delivery, cost string
		items                                    int
	}{
		{"express", "FedEx", "FedEx Express", "2026-03-24", "0.15", 2},
		{"overnight", "FedEx", "FedEx Overnight", "2026-03-23", "0.25", 1},
		{"standard", "UPS", "UPS Ground", "2026-03-27", "1.34", 3}, // weight 1.5: round(8.99 + 1.25·100)/100
	}
	for _, c := range cases {
		items := strings.Repeat(`{"sku":"WIDGET-001"},`, c.items)
		order := `{"validated_items":[` + strings.TrimSuffix(items, ",") + `]}`
		out := output(t, call(t, "order_fulfillment.ship_order", withContext(`{"shipping":{"method":"`+c.method+`","address":{}}}`),
			withDep("validate_order", order), withDep("reserve_inventory", `{}`), withDep("process_payment", `{}`)))
		if path(t, out, "carrier") != c.carrier || path(t, out, "service_type") != c.service ||
			path(t, out, "estimated_delivery") != c.delivery || num(t, out, "shipping_cost") != c.cost {
			t.Errorf("%s: %s", c.method, out)
		}
		if c.carrier == "FedEx" && !strings.HasPrefix(path(t, out, "tracking_number").(string), "1Z") {
			t.Errorf("%s tracking %v", c.method, path(t, out, "tracking_number"))
		}
	}
	if got := addBusinessDays(time.Date(2026, 3, 21, 0, 0, 0, 0, time.UTC), 1).Format(time.DateOnly); got != "2026-03-23" {
		t.Errorf("Saturday + 1 business day = %s", got)
	}
}

func TestValidateOrderFailures(t *testing.T) {
	item := `{"sku":"WIDGET-001","quantity":1,"price":10}`
	cust := `"customer":{"id":1,"email":"a@b.c"}`
	cases := []struct{ ctx, code string }{
		{`{}`, "MISSING_CUSTOMER_INFO"},
		{`{"customer":{"email":"a@b.c"}}`, "MISSING_CUSTOMER_ID"},
		{`{"customer":{"id":"1","email":"a@b.c"}}`, "MISSING_CUSTOMER_ID"},
		{`{"customer":{"id":1}}`, "MISSING_CUSTOMER_EMAIL"},
		{`{` + cust + `}`, "MISSING_ORDER_ITEMS"},
		{`{` + cust + `,"items":null}`, "INVALID_ORDER_ITEMS"},
		{`{` + cust + `,"items":[]}`, "EMPTY_ORDER_ITEMS"},
		{`{` + cust + `,"items":[{"quantity":1,"price":1}]}`, "INVALID_ORDER_ITEM"},
		{`{` + cust + `,"items":[{"sku":"WIDGET-001","price":1}]}`, "INVALID_ORDER_ITEM"},
		{`{` + cust + `,"items":[{"sku":"WIDGET-001","quantity":1}]}`, "INVALID_ORDER_ITEM"},
		{`{` + cust + `,"items":[` + item + `,{"sku":"WIDGET-001","quantity":0,"price":1}]}`, "INVALID_QUANTITY"},
		{`{` + cust + `,"items":[{"sku":"WIDGET-001","quantity":1,"price":-0.01}]}`, "INVALID_PRICE"},
		{`{` + cust + `,"items":[{"sku":"NOPE-1","quantity":1,"price":1}]}`, "PRODUCT_NOT_FOUND"},
		{`{` + cust + `,"items":[{"sku":"GADGET-002","quantity":201,"price":250}]}`, "ORDER_TOTAL_TOO_HIGH"},
	}
	for _, c := range cases {
		assertFailure(t, call(t, "order_fulfillment.validate_order", withContext(c.ctx)), c.code, "ValidationError", false)
	}
	ser := assertFailure(t, call(t, "order_fulfillment.validate_order",
		withContext(`{`+cust+`,"items":[`+item+`,{"sku":"X"}]}`)), "INVALID_ORDER_ITEM", "ValidationError", false)
	if string(ser.Metadata.Context["item_index"]) != "1" || !strings.Contains(ser.Error.Message, "position 2: missing quantity") {
		t.Errorf("item failure: %s %v", ser.Error.Message, ser.Metadata.Context)
	}
	// The limit comes from handler.initialization.
	r := call(t, "order_fulfillment.validate_order", withContext(`{`+cust+`,"items":[`+item+`]}`), withInit(`{"max_order_total":5}`))
	assertFailure(t, r, "ORDER_TOTAL_TOO_HIGH", "ValidationError", false)
}

func TestOrderDownstreamFailures(t *testing.T) {
	over := `{"validated_items":[{"sku":"WIDGET-002","quantity":51,"unit_price":1,"line_total":51}]}`
	ser := assertFailure(t, call(t, "order_fulfillment.reserve_inventory", withDep("validate_order", over)), "INSUFFICIENT_STOCK", "InventoryError", true)
	if !strings.Contains(ser.Error.Message, "Available: 50, Requested: 51") {
		t.Errorf("message %q", ser.Error.Message)
	}
	assertFailure(t, call(t, "order_fulfillment.reserve_inventory"), "MISSING_DEPENDENCY_RESULTS", "DependencyError", true)
	assertFailure(t, call(t, "order_fulfillment.reserve_inventory", withDep("validate_order", `{}`)), "NO_VALIDATED_ITEMS", "ValidationError", false)

	deps := []stepOpt{withDep("validate_order", `{"order_total":10}`), withDep("reserve_inventory", `{}`)}
	assertFailure(t, call(t, "order_fulfillment.process_payment", deps[1]), "MISSING_VALIDATION_RESULTS", "DependencyError", true)
	assertFailure(t, call(t, "order_fulfillment.process_payment", deps[0]), "MISSING_RESERVATION_RESULTS", "DependencyError", true)
	assertFailure(t, call(t, "order_fulfillment.process_payment", deps...), "MISSING_PAYMENT_INFO", "ValidationError", false)
	assertFailure(t, call(t, "order_fulfillment.process_payment", append(deps, withContext(`{"payment":{"token":"t"}}`))...),
		"MISSING_PAYMENT_METHOD", "ValidationError", false)
	assertFailure(t, call(t, "order_fulfillment.process_payment", append(deps, withContext(`{"payment":{"method":"paypal"}}`))...),
		"MISSING_PAYMENT_TOKEN", "ValidationError", false)

	shipDeps := []stepOpt{withDep("validate_order", `{}`), withDep("reserve_inventory", `{}`), withDep("process_payment", `{}`)}
	assertFailure(t, call(t, "order_fulfillment.ship_order", shipDeps[:2]...), "MISSING_DEPENDENCY", "DependencyError", true)
	assertFailure(t, call(t, "order_fulfillment.ship_order", shipDeps...), "MISSING_SHIPPING_INFO", "ValidationError", false)
	assertFailure(t, call(t, "order_fulfillment.ship_order", append(shipDeps, withContext(`{"shipping":{"method":"express"}}`))...),
		"MISSING_SHIPPING_ADDRESS", "ValidationError", false)
}
